"""Quicker-to-compile C callbacks for nutpie: the same numbers, seconds less per job.

nutpie wraps a model's log-density and gradient in two Numba `cfunc`s. Its wrappers copy
arrays with `out[...] = grad` and test them with `np.all(np.isfinite(out))`; Numba
compiles its broadcasting machinery for those anew in every process (it cannot cache
it), which took 3-5 s of each sampling job (profile in benchmarks/README.md). The
wrappers below do the same work with plain loops, which compile in a fraction of that.
They return the same codes in the same cases, so the sampler sees the same values and
draws are bitwise identical (tests/test_nutpie_callbacks.py checks this).

`install()` replaces the two private factories in `nutpie.compile_pymc`; it does so only
for the nutpie version they were written against, and otherwise leaves nutpie alone.
"""

import logging

import numpy as np

log = logging.getLogger("pipeline.nutpie_callbacks")

# The nutpie release whose private `_make_c_logp_func`/`_make_c_expand_func` these mirror.
WRITTEN_FOR = "0.16.11"


def make_logp_callback(n_dim, logp_fn, user_data, shared_keys, shared_data):
    import numba
    from nutpie.compile_pymc import make_extraction_fn

    extract = make_extraction_fn(logp_fn, shared_data, shared_keys, user_data.dtype)
    signature = numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )

    def logp_callback(dim, x_, out_, logp_, user_data_):
        if dim != n_dim:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            logp_val, grad = extract(x, user_data_)
            logp_val = logp_val[()]
            logp_[0] = logp_val
            finite = True
            for i in range(n_dim):
                out_[i] = grad[i]
                if not np.isfinite(grad[i]):
                    finite = False
            if not finite:
                return 3
            if not np.isfinite(logp_val):
                return 4
        except Exception:  # a C callback must return a code, never raise
            return 1
        return 0

    return logp_callback, signature


def make_expand_callback(n_dim, n_expanded, expand_fn, user_data, shared_var_keys, shared_data):
    import numba
    from nutpie.compile_pymc import make_extraction_fn

    extract = make_extraction_fn(expand_fn, shared_data, shared_var_keys, user_data.dtype)
    signature = numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )

    def expand_callback(dim, expanded, x_, out_, user_data_):
        if dim != n_dim:
            return -1
        if expanded != n_expanded:
            return -1
        try:
            x = numba.carray(x_, (n_dim,))
            (values,) = extract(x, user_data_)
            for i in range(n_expanded):
                out_[i] = values[i]
        except Exception:  # as above
            return -2
        return 0

    return expand_callback, signature


def install() -> bool:
    """Use the callbacks above in nutpie; False (and nutpie untouched) on another version."""
    import nutpie
    import nutpie.compile_pymc as compile_pymc

    if nutpie.__version__ != WRITTEN_FOR or not hasattr(compile_pymc, "_make_c_logp_func"):
        log.warning("nutpie %s: keeping its own callbacks (these mirror %s)", nutpie.__version__, WRITTEN_FOR)
        return False
    compile_pymc._make_c_logp_func = make_logp_callback
    compile_pymc._make_c_expand_func = make_expand_callback
    return True
