"""The model's graph (PyMC's model_to_graphviz), rendered by Graphviz's `dot` to PNG and SVG."""


from pathlib import Path

from common import atomic_path, load_module, read_prepared


def main(data: str, model_file: str, png: str, svg: str) -> None:
    import pymc as pm

    graph = pm.model_to_graphviz(load_module(model_file).build(read_prepared(data)))
    for path in (png, svg):
        with atomic_path(path) as tmp:
            tmp.write_bytes(graph.pipe(format=Path(path).suffix.lstrip(".")))
