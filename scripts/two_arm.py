"""Two-arm trials with a binary outcome: one trial's likelihood with its own parameters
integrated out, for leave-one-trial-out cross-validation of the trials_* models.

A trial has a baseline b (the log odds of an event in its control arm) and a treatment
effect d (the log odds ratio); its events are Binomial in each arm (Smith, Spiegelhalter
and Thomas 1995):

    control_events ~ Binomial(control_trials, invlogit(b))
    treated_events ~ Binomial(treated_trials, invlogit(b + d))

Left out of a fit, a trial's baseline has only its prior, b ~ Normal(0, baseline_sd), and
its effect that of a new trial under the fitted model, d ~ Normal(mean, sd) (sd = 0: d is
the common effect itself). `log_integrated_likelihood` gives

    log of the integral of p(events | b, d) N(b | 0, baseline_sd) N(d | mean, sd) db dd

per posterior draw of (mean, sd) and trial, by adaptive Gauss-Hermite quadrature: the
integrand is log-concave, so Newton's method finds its mode and curvature, and a product
grid of nodes is laid along them (with sd = 0, a one-dimensional grid over b). Measured
against a fine two-dimensional grid in tests/test_two_arm.py (see EDGE_NODES).
"""

import numpy as np
from scipy import special

NODES = 12  # Gauss-Hermite nodes per dimension: exact for polynomials of degree 23
# A trial with no event, or only events, in an arm has a one-sided likelihood in its
# baseline, a plateau the Gaussian-centred nodes fit poorly: 48 nodes keep such a trial
# within 4e-4 of a fine grid (12: 2e-2), the others within 1e-5; under no pooling's vague
# prior on the effect, 1e-3 and 1e-4 (tests/test_two_arm.py).
EDGE_NODES = 48
NEWTON_STEPS = 25
BLOCK = 200_000  # (draw, trial) pairs per block: bounded memory at many draws


def log_choose(events, trials):
    return special.gammaln(trials + 1) - special.gammaln(events + 1) - special.gammaln(trials - events + 1)


def _log_integrand(b, d, design, mean, sd, baseline_sd):
    """log p(events | b, d) + log priors of b and d, without the binomial coefficients
    (constant per trial: added once by the caller)."""
    control_events, control_trials, treated_events, treated_trials = design
    value = (control_events * b - control_trials * np.logaddexp(0, b)
             + treated_events * (b + d) - treated_trials * np.logaddexp(0, b + d))
    value = value - 0.5 * (b / baseline_sd) ** 2 - np.log(np.sqrt(2 * np.pi) * baseline_sd)
    if sd is not None:
        value = value - 0.5 * ((d - mean) / sd) ** 2 - np.log(np.sqrt(2 * np.pi) * sd)
    return value


def _mode(design, mean, sd, baseline_sd):
    """Newton's method for the integrand's mode in (b, d), or in b alone with sd None;
    returns the mode and the Hessian's entries there."""
    control_events, control_trials, treated_events, treated_trials = design
    b = special.logit((control_events + 0.5) / (control_trials + 1)) + 0 * mean
    d = mean + 0 * b
    if sd is not None:
        own = special.logit((treated_events + 0.5) / (treated_trials + 1)) - b
        own_precision = 1 / (1 / (treated_events + 0.5) + 1 / (treated_trials - treated_events + 0.5))
        d = (own * own_precision + mean / sd**2) / (own_precision + 1 / sd**2)
    for _ in range(NEWTON_STEPS):
        pc, pt = special.expit(b), special.expit(b + d)
        wc, wt = control_trials * pc * (1 - pc), treated_trials * pt * (1 - pt)
        grad_b = control_events - control_trials * pc + treated_events - treated_trials * pt - b / baseline_sd**2
        hbb = -wc - wt - 1 / baseline_sd**2
        if sd is None:
            b = b - np.clip(grad_b / hbb, -2, 2)
            continue
        grad_d = treated_events - treated_trials * pt - (d - mean) / sd**2
        hbd, hdd = -wt, -wt - 1 / sd**2
        det = hbb * hdd - hbd**2
        step_b = (hdd * grad_b - hbd * grad_d) / det
        step_d = (hbb * grad_d - hbd * grad_b) / det
        b, d = b - np.clip(step_b, -2, 2), d - np.clip(step_d, -2, 2)
    pc, pt = special.expit(b), special.expit(b + d)
    wc, wt = control_trials * pc * (1 - pc), treated_trials * pt * (1 - pt)
    hbb = -wc - wt - 1 / baseline_sd**2
    if sd is None:
        return b, d, hbb, None, None
    return b, d, hbb, -wt, -wt - 1 / sd**2


def _block(design, mean, sd, baseline_sd, nodes):
    x, w = np.polynomial.hermite.hermgauss(nodes)
    b, d, hbb, hbd, hdd = _mode(design, mean, sd, baseline_sd)
    if sd is None:
        scale = np.sqrt(-1 / hbb)
        points = b[..., None] + np.sqrt(2) * scale[..., None] * x
        expanded = [value[..., None] for value in design]
        logs = _log_integrand(points, d[..., None], expanded, None, None, baseline_sd) + x**2 + np.log(w)
        return 0.5 * np.log(2) + np.log(scale) + special.logsumexp(logs, axis=-1)
    # Cholesky factor of the covariance (-H)^-1 of the Gaussian that matches the mode.
    det = hbb * hdd - hbd**2
    cov_bb, cov_bd, cov_dd = -hdd / det, hbd / det, -hbb / det
    l11 = np.sqrt(cov_bb)
    l21 = cov_bd / l11
    l22 = np.sqrt(np.maximum(cov_dd - l21**2, 1e-300))
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    z1, z2 = z1.ravel(), z2.ravel()
    log_weights = (np.log(w)[:, None] + np.log(w)[None, :]).ravel() + z1**2 + z2**2
    pb = b[..., None] + np.sqrt(2) * l11[..., None] * z1
    pd = d[..., None] + np.sqrt(2) * (l21[..., None] * z1 + l22[..., None] * z2)
    expanded = [value[..., None] for value in design]
    logs = _log_integrand(pb, pd, expanded, mean[..., None], sd[..., None], baseline_sd) + log_weights
    return np.log(2) + np.log(l11 * l22) + special.logsumexp(logs, axis=-1)


def log_integrated_likelihood(data, mean, sd, *, baseline_sd: float, nodes: int = NODES):
    """log p(trial j's events | mean, sd), its baseline and effect integrated out, for every
    draw of mean (and sd: None for a common effect) and every trial: array (..., trials).

    `mean` and `sd` are arrays of draws of any shape (chain, draw), or scalars."""
    design = [data[column].to_numpy(float) for column in ("control_events", "control_trials", "treated_events", "treated_trials")]
    edge = (design[0] == 0) | (design[0] == design[1]) | (design[2] == 0) | (design[2] == design[3])
    if edge.any() and nodes < EDGE_NODES:
        result = np.empty((*np.shape(mean), len(edge)))
        for rows, count in ((~edge, nodes), (edge, EDGE_NODES)):
            if rows.any():
                result[..., rows] = log_integrated_likelihood(data[rows], mean, sd, baseline_sd=baseline_sd, nodes=count)
        return result
    constant = log_choose(design[0], design[1]) + log_choose(design[2], design[3])
    mean = np.asarray(mean, dtype=float)
    shape = mean.shape
    flat_mean = mean.reshape(-1, 1)
    flat_sd = None if sd is None else np.broadcast_to(np.asarray(sd, dtype=float), shape).reshape(-1, 1)
    trials = len(design[0])
    result = np.empty((flat_mean.shape[0], trials))
    step = max(1, BLOCK // trials)
    for start in range(0, flat_mean.shape[0], step):
        rows = slice(start, start + step)
        block_mean = np.broadcast_to(flat_mean[rows], (flat_mean[rows].shape[0], trials))
        block_sd = None if flat_sd is None else np.broadcast_to(flat_sd[rows], block_mean.shape)
        block_design = [np.broadcast_to(value, block_mean.shape) for value in design]
        result[rows] = _block(block_design, block_mean, block_sd, baseline_sd, nodes)
    return (result + constant).reshape(*shape, trials)
