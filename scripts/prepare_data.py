"""Read a user's binomial table, validate it, and write it as group,trials,successes.

Validation happens here, before anything is sampled, and stops at the first problem with a
one-line message naming the file, the row (and its line in the file) and the column. The
`csv` module is used rather than pandas so that every cell is seen as the text the user
wrote: pandas would silently turn "5.5" into a float column or "" into NaN.

`read_rows` does what every table needs (encoding, delimiter, header, columns, labels);
`validate` checks a group's trials and successes, `validate_later` the later counts a data
set may hold for held-out scoring (scripts/holdout.py).
"""


import csv
import difflib
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path

from common import UserError, atomic_path

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


def counts(path: Path, row: int, line: int, cells: dict, trials: str, successes: str, *, at_least: int = 1) -> tuple[int, int]:
    """A row's (trials, successes), checked: whole, not negative, trials at least `at_least`,
    successes at most trials."""
    n = parse_count(path, row, line, trials, cells["trials"])
    y = parse_count(path, row, line, successes, cells["successes"])
    if n < at_least:
        raise UserError(f"{path}: row {row} (line {line}), column '{trials}': trials must be at least {at_least}")
    if y > n:
        raise UserError(f"{path}: row {row} (line {line}), column '{successes}': {y} successes exceed {n} trials")
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


def write_table(rows: list[tuple[str, int, int]], output: str | Path) -> None:
    with atomic_path(output) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["group", "trials", "successes"])
        writer.writerows(rows)


def main(source: str, table: str, *, group: str, trials: str, successes: str, delimiter: str = ",") -> None:
    rows = validate(source, group, trials, successes, delimiter)
    write_table(rows, table)
