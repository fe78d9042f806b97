"""Data preparation: every kind of bad table is rejected with file, row and column named."""

import csv

import pytest

import prepare_data
from common import UserError

HEADER = "mission,launches,successes\n"
COLUMNS = {"group": "mission", "trials": "launches", "successes": "successes"}


def prepare(tmp_path, content, **columns):
    source = tmp_path / "input.csv"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content)
    output = tmp_path / "out" / "data.csv"
    prepare_data.main(str(source), str(output), **{**COLUMNS, **columns})
    return output


def test_valid_table_is_written_with_standard_columns(tmp_path):
    output = prepare(tmp_path, HEADER + "A,5,2\nB,304,301\n")
    rows = list(csv.reader(output.open()))
    assert rows == [["group", "trials", "successes"], ["A", "5", "2"], ["B", "304", "301"]]


def test_spacex_table_matches_the_article(spacex_prepared):
    rows = list(csv.DictReader(spacex_prepared.open()))
    assert [r["group"] for r in rows] == ["Falcon 1", "Falcon 9", "Falcon Heavy", "Starship"]
    assert [int(r["trials"]) for r in rows] == [5, 304, 9, 9]
    assert [int(r["successes"]) for r in rows] == [2, 301, 9, 5]


def test_integral_decimals_byte_order_mark_and_blank_lines_are_accepted(tmp_path):
    output = prepare(tmp_path, ("\ufeff" + HEADER + "A,5.0,2\n\nB, 7 ,3\n").encode())
    rows = list(csv.reader(output.open()))
    assert rows[1:] == [["A", "5", "2"], ["B", "7", "3"]]


def test_other_column_names_and_extra_columns(tmp_path):
    output = prepare(tmp_path, "n,y,name,notes\n10,4,x,first\n", group="name", trials="n", successes="y")
    assert output.read_text() == "group,trials,successes\nx,10,4\n"


def test_custom_delimiter(tmp_path):
    output = prepare(tmp_path, "mission;launches;successes\nA;3;1\n", delimiter=";")
    assert output.read_text().splitlines()[1] == "A,3,1"


BAD_TABLES = [
    ("", "file is empty"),
    ("   \n", "file is empty"),
    (HEADER, "no data rows"),
    ("mission,successes\nA,1\n", "no column 'launches'"),
    ("mission,launchs,successes\nA,5,1\n", "did you mean 'launchs'"),
    (HEADER + "A,five,1\n", "row 1 (line 2), column 'launches': 'five' is not a number"),
    (HEADER + "A,5,2.5\n", "row 1 (line 2), column 'successes': '2.5' is not a whole number"),
    (HEADER + "A,5,1\nB,-3,1\n", "row 2 (line 3), column 'launches': -3 is negative"),
    (HEADER + "A,5,6\n", "row 1 (line 2), column 'successes': 6 successes exceed 5 trials"),
    (HEADER + "A,0,0\n", "row 1 (line 2), column 'launches': trials must be at least 1"),
    (HEADER + "A,,1\n", "row 1 (line 2), column 'launches': missing value"),
    (HEADER + "A,5,1\nA,6,2\n", "row 2 (line 3), column 'mission': group 'A' repeats row 1"),
    (HEADER + "A,5,1\n A ,6,2\n", "group 'A' repeats row 1"),
    (HEADER + ",5,1\n", "row 1 (line 2), column 'mission': empty group label"),
    (HEADER + "A,99999999999,1\n", "is too large"),
    (HEADER + "A,inf,1\n", "'inf' is not a whole number"),
    (HEADER + "A,5\n", "row 1 (line 2): 2 fields, but the header has 3"),
    ("mission;launches;successes\nA;5;1\n", "separated by semicolons"),
    ("mission\tlaunches\tsuccesses\nA\t5\t1\n", "separated by tabs"),
    ("mission|launches|successes\nA|5|1\n", "separated by pipes"),
    ("\ufeff", "file is empty"),
    ("\ufeff" + HEADER, "no data rows"),
    ("mission,launches,successes,launches\nA,5,1,5\n", "column 'launches' appears more than once"),
    (HEADER + "A,5,1,extra\n", "row 1 (line 2): 4 fields, but the header has 3"),
    (HEADER + "   ,5,1\n", "empty group label"),
    (HEADER + "A,1 0,1\n", "'1 0' is not a number"),
    (HEADER + "A,0x10,1\n", "'0x10' is not a number"),
    (HEADER + "A,NaN,1\n", "'NaN' is not a whole number"),
    (HEADER + "A,-0,0\n", "trials must be at least 1"),
    (HEADER + "A,5,-1\n", "column 'successes': -1 is negative"),
    (HEADER + "A,5,\n", "column 'successes': missing value"),
    (HEADER + "A,5,1\nB,4,2\nC,3,x\n", "row 3 (line 4), column 'successes': 'x' is not a number"),
    (HEADER.encode() + b"Caf\xe9,5,1\n", "line 2: byte 0xe9 is not UTF-8"),
]


@pytest.mark.parametrize("content,message", BAD_TABLES)
def test_bad_table_names_the_problem_and_writes_nothing(tmp_path, content, message):
    with pytest.raises(UserError) as caught:
        prepare(tmp_path, content)
    text = str(caught.value)
    assert message in text
    assert text.startswith(str(tmp_path / "input.csv"))
    assert "\n" not in text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="data file not found"):
        prepare_data.main(str(tmp_path / "nope.csv"), str(tmp_path / "out.csv"), **COLUMNS)
    with pytest.raises(UserError, match="is a directory"):
        prepare_data.main(str(tmp_path), str(tmp_path / "out.csv"), **COLUMNS)
    assert not (tmp_path / "out.csv").exists()


def test_failed_validation_leaves_an_earlier_result_untouched(tmp_path):
    output = prepare(tmp_path, HEADER + "A,5,2\n")
    before = output.read_bytes()
    with pytest.raises(UserError):
        prepare(tmp_path, HEADER + "A,5,7\n")
    assert output.read_bytes() == before
