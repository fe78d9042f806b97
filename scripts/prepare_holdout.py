"""Read a data set's later counts (datasets.NAME.holdout), validate them, and write them as
group,trials,successes for the groups that have them (scripts/holdout.py scores on them).

Checked like the data themselves (prepare_data.py): one-line errors naming the file, row
and column. A group without later data (both cells empty, or 0 later trials) is skipped,
and the log says how many.
"""

import logging

from prepare_data import validate_later, write_table

log = logging.getLogger("pipeline.prepare_holdout")


def main(source: str, later: str, *, group: str, trials: str, successes: str, delimiter: str = ",") -> None:
    rows, without = validate_later(source, group, trials, successes, delimiter)
    log.info("%d groups with later data, %d without (skipped)", len(rows), without)
    write_table(rows, later)
