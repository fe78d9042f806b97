"""Read a user's table, validate it, and write it in the columns of its shape.

A data set's shape (scripts/shapes.py) is what its columns hold: trials and successes
(binomial), estimates and standard errors (effects), or events and patients in a treated
and a control arm (two-arm trials). `resolve` finds it from the config and the file's
header. Validation happens here, before anything is sampled, and stops at the first
problem with a one-line message naming the file, the row (and its line in the file) and
the column. The `csv` module is used rather than pandas so that every cell is seen as the
text the user wrote: pandas would silently turn "5.5" into a float column or "" into NaN.

`read_rows` does what every table needs (encoding, delimiter, header, columns, labels);
`validate`, `validate_effects` and `validate_two_arm` check each shape's cells,
`validate_later` the later counts a data set may hold for held-out scoring
(scripts/holdout.py).
"""


import csv
import difflib
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path

from common import UserError, atomic_path
from shapes import ROLES, SHAPES

# Above this the Binomial log-likelihood loses precision in float64 and int32 overflows.
MAX_TRIALS = 2**31 - 1
OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}
INTEGER = re.compile(r"[+-]?\d+")


def read_text(path: Path) -> str:
    if not path.exists():
        raise UserError(f"{path}: data file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a CSV file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet programs put at the start.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}: line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from exc


def find_column(path: Path, header: list[str], wanted: str, role: str) -> int:
    stripped = [name.strip() for name in header]
    if wanted in stripped:
        return stripped.index(wanted)
    close = difflib.get_close_matches(wanted, stripped, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; columns are {', '.join(map(repr, stripped))}"
    raise UserError(f"{path}: no column '{wanted}' (the {role} column in the config){hint}")


def parse_count(path: Path, row: int, line: int, column: str, text: str) -> int:
    where = f"{path}: row {row} (line {line}), column '{column}'"
    value = text.strip()
    if value == "":
        raise UserError(f"{where}: missing value")
    if INTEGER.fullmatch(value):
        number = int(value)
    else:
        try:
            as_float = float(value)
        except ValueError:
            raise UserError(f"{where}: '{value}' is not a number") from None
        if not math.isfinite(as_float) or not as_float.is_integer():
            raise UserError(f"{where}: '{value}' is not a whole number")
        number = int(as_float)
    if number < 0:
        raise UserError(f"{where}: {number} is negative")
    if number > MAX_TRIALS:
        raise UserError(f"{where}: {number} is too large (at most {MAX_TRIALS})")
    return number


def read_rows(path: str | Path, columns: dict[str, str], delimiter: str = ",") -> Iterator[tuple[int, int, dict[str, str]]]:
    """(row number, line, {role: cell text}) for every data row of the table; `columns` maps
    each role (group first) to its column name. Checks the file, the header, the number of
    fields and the group labels (present, unique), and that there is a row at all."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise UserError(f"{path}: file is empty; expected a header and at least one row")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    if len(header) == 1:
        for other, name in OTHER_DELIMITERS.items():
            if other in header[0]:
                raise UserError(
                    f"{path}: line 1: columns are separated by {name}, expected '{delimiter}'; "
                    f"set the data set's 'delimiter' in the config or save the file as CSV"
                )
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if names.count(name) > 1 and name})
    if repeated:
        raise UserError(f"{path}: line 1: column '{repeated[0]}' appears more than once")
    positions = {role: find_column(path, header, name, role) for role, name in columns.items()}
    group = columns["group"]
    first_seen: dict[str, int] = {}
    seen_any = False
    for row_number, fields in enumerate(reader, start=1):
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue  # blank lines, often at the end of a hand-edited file
        if len(fields) != len(header):
            raise UserError(
                f"{path}: row {row_number} (line {line}): {len(fields)} fields, but the header has {len(header)}"
            )
        label = fields[positions["group"]].strip()
        if not label:
            raise UserError(f"{path}: row {row_number} (line {line}), column '{group}': empty group label")
        if label in first_seen:
            raise UserError(
                f"{path}: row {row_number} (line {line}), column '{group}': group '{label}' repeats "
                f"row {first_seen[label]} (labels are compared without surrounding spaces)"
            )
        first_seen[label] = row_number
        seen_any = True
        yield row_number, line, {role: (label if role == "group" else fields[index]) for role, index in positions.items()}
    if not seen_any:
        raise UserError(f"{path}: no data rows after the header")


def counts(path: Path, row: int, line: int, cells: dict, trials: str, successes: str, *, at_least: int = 1,
           nouns: tuple[str, str] = ("trials", "successes")) -> tuple[int, int]:
    """A row's (trials, successes), checked: whole, not negative, trials at least `at_least`,
    successes at most trials (`nouns`: their names in messages)."""
    n = parse_count(path, row, line, trials, cells["trials"])
    y = parse_count(path, row, line, successes, cells["successes"])
    if n < at_least:
        raise UserError(f"{path}: row {row} (line {line}), column '{trials}': {nouns[0]} must be at least {at_least}")
    if y > n:
        raise UserError(f"{path}: row {row} (line {line}), column '{successes}': {y} {nouns[1]} exceed {n} {nouns[0]}")
    return n, y


def validate(path: str | Path, group: str, trials: str, successes: str, delimiter: str = ",") -> list[tuple[str, int, int]]:
    """Return the table as (group, trials, successes) rows, or raise UserError."""
    path = Path(path)
    columns = {"group": group, "trials": trials, "successes": successes}
    rows = read_rows(path, columns, delimiter)
    return [(cells["group"], *counts(path, row, line, cells, trials, successes)) for row, line, cells in rows]


def validate_later(path: str | Path, group: str, trials: str, successes: str, delimiter: str = ",") -> tuple[list, int]:
    """The later counts of a data set, for held-out scoring: (rows of the groups that have
    them, how many groups have none). A group has none when both cells are empty, or its
    later trials are 0 (with 0 successes); one cell empty without the other is an error."""
    path = Path(path)
    rows, without = [], 0
    for row, line, cells in read_rows(path, {"group": group, "trials": trials, "successes": successes}, delimiter):
        if not cells["trials"].strip() and not cells["successes"].strip():
            without += 1
            continue
        n, y = counts(path, row, line, cells, trials, successes, at_least=0)
        if n == 0:
            without += 1
            continue
        rows.append((cells["group"], n, y))
    if not rows:
        raise UserError(
            f"{path}: no group has later data in columns '{trials}' and '{successes}' (the holdout columns in the config)"
        )
    return rows, without


def parse_number(path: Path, row: int, line: int, column: str, text: str) -> float:
    where = f"{path}: row {row} (line {line}), column '{column}'"
    value = text.strip()
    if value == "":
        raise UserError(f"{where}: missing value")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{where}: '{value}' is not a number") from None
    if not math.isfinite(number):
        raise UserError(f"{where}: '{value}' is not a finite number")
    return number


def at_least_two(path: Path, rows: list, what: str) -> list:
    if len(rows) < 2:
        raise UserError(f"{path}: {len(rows)} {what}; pooling needs at least two")
    return rows


def validate_effects(path: str | Path, columns: dict, delimiter: str = ",") -> list[tuple[str, float, float]]:
    """Effect estimates with their standard errors: (group, estimate, se) rows; se > 0."""
    path = Path(path)
    rows = []
    for row, line, cells in read_rows(path, {"group": columns["group"], "estimate": columns["estimate"],
                                             "se": columns["se"]}, delimiter):
        estimate = parse_number(path, row, line, columns["estimate"], cells["estimate"])
        se = parse_number(path, row, line, columns["se"], cells["se"])
        if se <= 0:
            raise UserError(f"{path}: row {row} (line {line}), column '{columns['se']}': {cells['se'].strip()} is not positive "
                            f"(a standard error must be above 0)")
        rows.append((cells["group"], estimate, se))
    return at_least_two(path, rows, "studies")


def validate_two_arm(path: str | Path, columns: dict, delimiter: str = ",") -> list[tuple]:
    """Two-arm trials: (group, treated trials, treated events, control trials, control
    events) rows; in each arm at least one patient and no more events than patients (zero
    events are allowed: the models need no continuity correction)."""
    path = Path(path)
    roles = SHAPES["two_arm"].columns
    rows = []
    for row, line, cells in read_rows(path, {"group": columns["group"], **{r: columns[r] for r in roles}}, delimiter):
        values = []
        for arm in ("treated", "control"):
            n, y = counts(path, row, line, {"trials": cells[f"{arm}_trials"], "successes": cells[f"{arm}_events"]},
                          columns[f"{arm}_trials"], columns[f"{arm}_events"], nouns=("patients", "events"))
            values += [n, y]
        rows.append((cells["group"], *values))
    return at_least_two(path, rows, "trials")


def validate_shape(path: str | Path, shape: str, columns: dict, delimiter: str = ",") -> list[tuple]:
    """The rows of a table of the given shape, validated (columns: role -> column name)."""
    if shape == "binomial":
        return validate(path, columns["group"], columns["trials"], columns["successes"], delimiter)
    if shape == "effects":
        return validate_effects(path, columns, delimiter)
    return validate_two_arm(path, columns, delimiter)


def resolve(name: str, settings: dict) -> tuple[str, dict]:
    """A data set's shape and its columns (role -> column name), from its config entry and,
    where that names none, from the file's header: the shape whose columns it has."""
    given = {role: settings[role] for role in ROLES if settings.get(role)}
    path = Path(settings["path"])
    if settings.get("shape"):
        shape = settings["shape"]
        stray = sorted(set(given) - set(SHAPES[shape].columns))
        if stray:
            raise UserError(f"config key datasets.{name}.{stray[0]}: not a column of {shape} data "
                            f"(its columns: {', '.join(SHAPES[shape].columns)})")
    elif given:
        fitting = [n for n, s in SHAPES.items() if set(given) <= set(s.columns)]
        if not fitting:
            raise UserError(f"config key datasets.{name}: columns {', '.join(sorted(given))} belong to different shapes "
                            f"(binomial: trials, successes; effects: estimate, se; two_arm: treated_trials, "
                            f"treated_events, control_trials, control_events)")
        shape = fitting[0]
    else:
        text = read_text(path)
        header = {cell.strip() for cell in next(csv.reader(io.StringIO(text, newline=""), delimiter=settings["delimiter"]), [])}
        found = [n for n, s in SHAPES.items() if set(s.columns) <= header]
        if len(found) != 1:
            raise UserError(
                f"{path}: its columns say no shape (config key datasets.{name}): name them in the config, or give the file "
                f"columns trials and successes (binomial), estimate and se (effect estimates), or treated_trials, "
                f"treated_events, control_trials and control_events (two-arm trials)"
            )
        shape = found[0]
    columns = {"group": settings["group"], **{role: given.get(role, role) for role in SHAPES[shape].columns}}
    return shape, columns


def prior_scale(rows: list[tuple]) -> float:
    """The effect models' prior scale: the spread of the estimates, sqrt(var(y) + mean(se^2))."""
    estimates = [row[1] for row in rows]
    variances = [row[2] ** 2 for row in rows]
    mean = sum(estimates) / len(estimates)
    return math.sqrt(sum((y - mean) ** 2 for y in estimates) / len(estimates) + sum(variances) / len(variances))


def write_table(rows: list[tuple], output: str | Path, header: list[str] = ("group", "trials", "successes")) -> None:
    with atomic_path(output) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main(source: str, table: str, *, shape: str = "binomial", columns: dict | None = None, delimiter: str = ",",
         scale: float | None = None, group: str = "group", **named: str) -> None:
    """`columns` maps each role of the shape to its column (the rule gives it, from `resolve`);
    or name them one by one (`group=..., trials=..., successes=...`)."""
    columns = columns or {"group": group, **{role: named.get(role, role) for role in SHAPES[shape].columns}}
    rows = validate_shape(source, shape, columns, delimiter)
    header = ["group", *SHAPES[shape].columns]
    if shape == "effects":
        # The priors' scale, fixed for the data set: a study left out keeps the others' priors.
        value = scale or prior_scale(rows)
        rows, header = [(*row, value) for row in rows], [*header, "prior_scale"]
    write_table(rows, table, header)
