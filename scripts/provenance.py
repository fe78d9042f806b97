"""Print what produced each trace in a results tree: seed, sampler, hashes, versions.

Usage: python scripts/provenance.py [RESULTS_DIR]   (default: results)
Reads only the traces' attributes, so it is quick even for large traces.
"""

import json
import sys
from pathlib import Path

FIELDS = ("dataset", "model", "seed", "sampler", "sampling", "model_settings", "data_sha256", "model_file_sha256")


def provenance_of(trace_path: Path) -> dict:
    import netCDF4

    with netCDF4.Dataset(trace_path) as handle:
        attrs = {name: handle.getncattr(name) for name in handle.ncattrs()}
    record = {field: attrs.get(f"pipeline_{field}") for field in FIELDS}
    record["versions"] = {k.removeprefix("version_"): v for k, v in attrs.items() if k.startswith("version_")}
    record["trace"] = str(trace_path)
    return record


def collect(results: Path) -> list[dict]:
    return [provenance_of(path) for path in sorted(results.glob("*/*/trace.nc"))]


def format_record(record: dict) -> str:
    lines = [f"{record['trace']}"]
    for field in FIELDS[2:]:
        value = record[field]
        if isinstance(value, str) and value.startswith("{"):
            value = json.dumps(json.loads(value), sort_keys=True)
        lines.append(f"  {field:18} {value}")
    lines.append("  versions           " + ", ".join(f"{k} {v}" for k, v in sorted(record["versions"].items())))
    return "\n".join(lines)


def main(results: str = "results") -> int:
    records = collect(Path(results))
    if not records:
        print(f"error: no traces under {results}/ (expected {results}/DATASET/MODEL/trace.nc)", file=sys.stderr)
        return 1
    print("\n\n".join(format_record(r) for r in records))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
