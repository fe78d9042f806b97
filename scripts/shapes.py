"""The three shapes a data set can have, and the little the workflow must know of each.

A data set's columns say its shape; a model file says which shape it takes (`SHAPE`,
binomial if it says nothing), and the workflow pairs models with data sets of their shape
only. Everything else works through each model's own variables (theta per group, the
observed variables, the new group): this module holds only what validation, a figure or
a table needs to put the raw data beside them.

- binomial: group, trials, successes (SpaceX, hospitals, batters); theta is a group's
  success probability.
- effects: group, estimate, se (effect estimates with their standard errors, read from
  studies: Rubin's eight schools, standardised mean differences, log hazard ratios); theta
  is a study's true effect, on the estimate's scale. The prepared table adds
  `prior_scale`, the scale of the models' priors, fixed for the data set.
- two_arm: group, treated_trials, treated_events, control_trials, control_events (trials
  with a binary outcome in a treated and a control arm: the beta-blocker trials); theta is
  a trial's treatment effect, its log odds ratio.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Shape:
    name: str
    columns: tuple[str, ...]  # the roles of the columns besides group; each is a config key
    counts: tuple[str, ...]  # those holding whole numbers
    value: str  # what theta is, for axes and captions
    observed: dict = field(default_factory=dict)  # the models' observed variable -> its column
    denominators: dict = field(default_factory=dict)  # observed variable -> column it is a count of
    meta_analysis: bool = False


SHAPES = {
    "binomial": Shape("binomial", ("trials", "successes"), ("trials", "successes"), "success probability",
                      observed={"y": "successes"}, denominators={"y": "trials"}),
    "effects": Shape("effects", ("estimate", "se"), (), "effect", observed={"y": "estimate"}, meta_analysis=True),
    "two_arm": Shape(
        "two_arm", ("treated_trials", "treated_events", "control_trials", "control_events"),
        ("treated_trials", "treated_events", "control_trials", "control_events"), "log odds ratio",
        observed={"y_treated": "treated_events", "y_control": "control_events"},
        denominators={"y_treated": "treated_trials", "y_control": "control_trials"}, meta_analysis=True,
    ),
}
# Every column role of every shape: the config keys that may name a data set's columns.
ROLES = tuple(dict.fromkeys(role for shape in SHAPES.values() for role in shape.columns))


def shape_of(table) -> str:
    """The shape of a prepared table, from its columns."""
    columns = set(table.columns) - {"group"}
    for name, shape in SHAPES.items():
        if set(shape.columns) <= columns:
            return name
    raise ValueError(f"a prepared table with columns {sorted(columns)} has no known shape")


def log_odds_ratios(table):
    """Each trial's empirical log odds ratio (treated vs control) and its standard error,
    with 1/2 added to every cell of a trial that has a zero cell: for drawing and tabulating
    the data only; the models use the exact binomial likelihood of each arm and need no
    correction."""
    a, n1 = table["treated_events"].to_numpy(float), table["treated_trials"].to_numpy(float)
    c, n2 = table["control_events"].to_numpy(float), table["control_trials"].to_numpy(float)
    b, d = n1 - a, n2 - c
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a, b, c, d = (x + 0.5 * zero for x in (a, b, c, d))
    return np.log(a * d / (b * c)), np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)


def observed_values(table):
    """Each group's own estimate of theta from its data alone: the raw rate, the reported
    estimate, or the empirical log odds ratio."""
    shape = shape_of(table)
    if shape == "binomial":
        return table["successes"].to_numpy() / table["trials"].to_numpy()
    if shape == "effects":
        return table["estimate"].to_numpy(float)
    return log_odds_ratios(table)[0]


def standard_errors(table):
    """The standard error of each group's own estimate (binomial: of its raw rate, with
    half a success and half a failure added so that 0 and n successes get one)."""
    shape = shape_of(table)
    if shape == "binomial":
        n, y = table["trials"].to_numpy(float), table["successes"].to_numpy(float)
        rate = (y + 0.5) / (n + 1)
        return np.sqrt(rate * (1 - rate) / n)
    if shape == "effects":
        return table["se"].to_numpy(float)
    return log_odds_ratios(table)[1]


def information(table):
    """How much each group's own data say, to find the least informed: its trials
    (binomial), its precision 1/se^2 (effects), its patients (two-arm)."""
    shape = shape_of(table)
    if shape == "binomial":
        return table["trials"].to_numpy(float)
    if shape == "effects":
        return 1 / table["se"].to_numpy(float) ** 2
    return (table["treated_trials"] + table["control_trials"]).to_numpy(float)


def new_group_sizes(table):
    """Per group, what the model's `new_group(model, size)` takes of its design: trials
    (binomial), a standard error (effects), nothing (two-arm: a new trial's events would
    need its baseline, which no trial tells)."""
    shape = shape_of(table)
    if shape == "binomial":
        return [int(n) for n in table["trials"]]
    if shape == "effects":
        return [float(s) for s in table["se"]]
    return [None] * len(table)


def with_observed(table, simulated: dict):
    """The table with its observed columns replaced by simulated values of the models'
    observed variables (name -> values per group)."""
    shape = SHAPES[shape_of(table)]
    return table.assign(**{shape.observed[name]: np.asarray(values) for name, values in simulated.items()})


def typical_within_variance(se):
    """Higgins and Thompson's typical within-study variance, (k - 1) sum w / ((sum w)^2 -
    sum w^2) with w = 1/se^2: the s^2 of I^2 = tau^2 / (tau^2 + s^2)."""
    w = 1 / np.asarray(se, float) ** 2
    return (len(w) - 1) * w.sum() / (w.sum() ** 2 - (w**2).sum())
