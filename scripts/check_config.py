"""Check the workflow's config before any job runs, and fill in its defaults.

The JSON schema (workflow/schemas/config.schema.yaml) says what is allowed and holds the
defaults; this module turns a schema violation into one line naming the key, adds a
"did you mean" for misspelled keys, and checks what a schema cannot: that files exist and
that names cannot collide with outputs.
"""


import copy
import difflib
from pathlib import Path

import jsonschema
import yaml

from common import UserError

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
MODELS_DIR = ROOT / "scripts" / "models"
# `make report` writes results/report.html beside the data sets' folders. Nothing else can
# collide: every file a rule writes beside the model folders has a dot in its name, which
# model names cannot have (tests/test_docs.py checks both facts against the rules).
RESERVED_NAMES = {"report.html"}


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def allowed_keys(schema: dict, path) -> list[str]:
    node = schema
    for part in path:
        props = node.get("properties", {})
        node = props[part] if part in props else node.get("additionalProperties", {})
    return sorted(node.get("properties", {})) if isinstance(node, dict) else []


def describe(error: jsonschema.ValidationError, schema: dict) -> str:
    where = key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        known = allowed_keys(schema, list(error.absolute_path))
        extra = sorted(set(error.instance) - set(known))
        messages = []
        for key in extra:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else (f"; allowed: {', '.join(known)}" if known else "")
            messages.append(f"config key {key_path([*error.absolute_path, key])}: unknown key{hint}")
        return "; ".join(messages)
    if error.validator == "propertyNames":
        return f"config key {where}: name '{error.instance}' is not allowed ({error.message})"
    if error.validator == "required":
        return f"config key {where}: {error.message}"
    return f"config key {where}: {error.message}"


def fill_defaults(node, schema: dict):
    """Fill `default`s of the schema into a config, recursively (jsonschema only checks)."""
    if not isinstance(node, dict):
        return node
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if key in node:
            fill_defaults(node[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(node) - set(schema.get("properties", {})):
            fill_defaults(node[key], extra)
    return node


JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def subschema(schema: dict, key: str) -> dict:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    return props.get(key) or (extra if isinstance(extra, dict) else {})


def coerce_strings(node, schema: dict):
    """Turn text into the number, boolean or null the schema asks for.

    `snakemake --config sampling='{draws: 100}'` reads nested values with YAML's
    BaseLoader, which leaves every scalar a string; without this, that documented way to
    override a setting would be rejected as "'100' is not of type 'integer'".
    """
    if isinstance(node, dict):
        return {key: coerce_strings(value, subschema(schema, key)) for key, value in node.items()}
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(node, str) and types and "string" not in types:
        parsed = yaml.safe_load(node) if node.strip() else None
        wanted = tuple(t for name in types if name in JSON_TYPES for t in as_tuple(JSON_TYPES[name]))
        if isinstance(parsed, wanted) and not (isinstance(parsed, bool) and "boolean" not in types):
            return parsed
    return node


def as_tuple(kind):
    return kind if isinstance(kind, tuple) else (kind,)


def model_constant(path: Path, name: str, default=None):
    """A top-level constant of a model file (SHAPE, POPULATION_MEAN), read without importing it."""
    import ast

    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == name for target in node.targets):
            return ast.literal_eval(node.value)
    return default


def model_shape(name: str, settings: dict) -> str:
    """The shape of data a model takes: its file's SHAPE, binomial if it says nothing."""
    return model_constant(model_file(name, settings), "SHAPE", "binomial")


def check_pairs(dataset_shapes: dict, model_shapes: dict) -> None:
    """Every data set has a model of its shape, or one line says which to add."""
    for dataset, shape in dataset_shapes.items():
        if shape not in model_shapes.values():
            takers = sorted(path.stem for path in MODELS_DIR.glob("*.py") if model_constant(path, "SHAPE", "binomial") == shape)
            raise UserError(
                f"config key models: no model takes data set {dataset}'s {shape} data; add one of {', '.join(takers)}"
            )


def defined_functions(path: Path) -> set[str]:
    """Top-level functions of a model file, read without importing it (PyMC is slow to import)."""
    import ast

    return {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}


def model_file(name: str, settings: dict) -> Path:
    return Path(settings["file"]) if settings.get("file") else MODELS_DIR / f"{name}.py"


def check_config(config: dict) -> dict:
    """Return the config with defaults filled in, or raise UserError naming the key."""
    schema = load_schema()
    config = dict(config)
    # Not settings: what the report's first page shows, set by common.smk.
    config.pop("report_overview", None)
    config.pop("report_shapes", None)
    config = coerce_strings(copy.deepcopy(config), schema)
    config["models"] = {
        name: ({} if settings is None else settings) for name, settings in (config.get("models") or {}).items()
    }
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        raise UserError(describe(errors[0], schema))
    fill_defaults(config, schema)
    for kind in ("datasets", "models"):
        for name in config[kind]:
            if name in RESERVED_NAMES:
                raise UserError(f"config key {kind}.{name}: the name '{name}' is reserved for outputs; choose another")
    clash = set(config["datasets"]) & set(config["models"])
    if clash:
        raise UserError(f"config key datasets.{sorted(clash)[0]}: a data set must not share its name with a model")
    for name, settings in config["datasets"].items():
        path = Path(settings["path"])
        if not path.is_file():
            problem = "is a directory, expected a CSV file" if path.is_dir() else "file not found"
            raise UserError(f"config key datasets.{name}.path: {path}: {problem}")
    for name, settings in config["models"].items():
        path = model_file(name, settings)
        if not path.is_file():
            known = sorted(p.stem for p in MODELS_DIR.glob("*.py"))
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; models available: {', '.join(known)}"
            raise UserError(f"config key models.{name}: no model file {path}{hint}")
        if settings.get("method") == "collapsed" and not {"build_collapsed", "complete"} <= defined_functions(path):
            raise UserError(
                f"config key models.{name}.method: collapsed, but {path} defines no build_collapsed() and complete(); "
                f"use nuts or auto"
            )
    for name in config["sbc"]["models"]:
        if name not in config["models"] and not (MODELS_DIR / f"{name}.py").is_file():
            known = sorted(config["models"])
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; models: {', '.join(known)}"
            raise UserError(f"config key sbc.models: no model '{name}'{hint}")
    # Calibrated are the listed models that this config fits; the others are skipped, so that
    # a config with fewer models needs no sbc section of its own.
    config["sbc"]["models"] = [name for name in config["sbc"]["models"] if name in config["models"]]
    return config
