"""Quicker-to-compile C callbacks for nutpie: the same numbers, seconds less per job.

nutpie wraps a model's log-density and gradient in two Numba `cfunc`s. Its wrappers copy
arrays with `out[...] = grad` and test them with `np.all(np.isfinite(out))`; Numba
compiles its broadcasting machinery for those anew in every process (it cannot cache
it), which took 3-5 s of each sampling job (profile in benchmarks/README.md). The
wrappers below do the same work with plain loops, which compile in a fraction of that.
They return the same codes in the same cases, so the sampler sees the same values and
draws are bitwise identical (tests/test_nutpie_callbacks.py checks this).

The same goes for the function that reads a model's swappable data (`pm.Data`, which
`with_data` replaces) out of nutpie's record of shared arrays: nutpie's own
(`make_extraction_fn`) is generic over any number of arrays of any types, through
`literal_unroll` and typed tuple surgery, which Numba took 2-3 s to type for the
collapsed model's three arrays (against about 1 s to compile the same model with its
data as constants). `make_extraction` writes the same reads out line by line for the
arrays at hand: the same pointers, sizes and shapes, so the same values reach the model.

`install()` replaces the two private factories in `nutpie.compile_pymc`; it does so only
for the nutpie version they were written against, and otherwise leaves nutpie alone.
"""

import logging

import numpy as np

log = logging.getLogger("pipeline.nutpie_callbacks")

# The nutpie release whose private `_make_c_logp_func`/`_make_c_expand_func` these mirror.
WRITTEN_FOR = "0.16.11"


def make_extraction(inner, shared_data, shared_keys, record_dtype):
    """`inner(x, *shared arrays)` as a function of (x, a pointer to nutpie's record of
    shared arrays): nutpie's `make_extraction_fn`, written out for these arrays."""
    import numba
    from nutpie.compile_pymc import address_as_void_pointer, make_extraction_fn

    if not shared_keys:
        return make_extraction_fn(inner, shared_data, shared_keys, record_dtype)
    lines = ["def extract_shared(x, user_data_):",
             "    shared = numba.carray(user_data_, (), record_dtype)['shared']"]
    names = {}
    for index, key in enumerate(shared_keys):
        values = shared_data[key]
        names[f"dtype_{index}"] = np.dtype(values.dtype)
        # The array's own shape, dimension by dimension, as nutpie's reshape gives it.
        shape = ", ".join(f"int(shared['shape'][{key!r}][{axis}])" for axis in range(values.ndim))
        lines += [
            f"    data_{index} = numba.carray(address_as_void_pointer(shared['data'][{key!r}][()]),"
            f" int(shared['size'][{key!r}][()]), dtype_{index})",
            f"    array_{index} = data_{index}.reshape(({shape}{',' if values.ndim == 1 else ''}))",
        ]
    lines.append(f"    return inner(x, {', '.join(f'array_{index}' for index in range(len(shared_keys)))})")
    scope = {"numba": numba, "record_dtype": record_dtype, "address_as_void_pointer": address_as_void_pointer,
             "inner": inner, **names}
    exec(compile("\n".join(lines), "<nutpie_callbacks.make_extraction>", "exec"), scope)
    return numba.njit(inline="always")(scope["extract_shared"])


def make_logp_callback(n_dim, logp_fn, user_data, shared_keys, shared_data):
    import numba

    extract = make_extraction(logp_fn, shared_data, shared_keys, user_data.dtype)
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

    extract = make_extraction(expand_fn, shared_data, shared_var_keys, user_data.dtype)
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
