"""Warm steps: every rule's `main()` runs in a process forked from a step worker that has
already imported the numerical stack, so a step costs its own work, not a Python start-up.

Why (measurements in docs/speed.md): a fresh Python process spends seconds importing PyMC,
ArviZ, xarray and matplotlib; most steps then work for a few tenths of a second. A fork
of a worker that imported them once costs ~10 ms, has its own address space (a crash or
an out-of-memory kill ends that step only, and its memory is returned when it ends) and
runs the very code path of a plain process, so results are bitwise equal
(tests/test_worker.py).

The parts:
- environment.py: what a fork can take over from its caller's environment, and the
  fingerprint that decides which worker a run may use.
- room.py: the user's private directory (mode 0700) that holds each worker's socket,
  description, lock and log; the kernel keeps every other user out.
- protocol.py: the request and its answers, the peer check, the limits.
- client.py: Snakemake's side: claim, start, run a step, redo it if its worker died,
  fall back to a fresh process, stop steps on Ctrl-C.
- server.py: the worker's loop, its lifetime (one run, or shared between runs until
  idle), and its zygotes, which keep compiled models (compiled.py).
- steps.py: fork, watch, reap and answer; execute.py: one step in its own process.

Off Linux, or with PIPELINE_WARM=0, every step runs in a fresh Python process: the same
results, a few seconds slower per step. `python scripts/runtime status` lists a user's
workers and `python scripts/runtime stop` stops them (docs/speed.md).
"""

from runtime.client import ENV, StepFailed, claim, run_step, start
from runtime.environment import PRELOAD_EXTRA, STEP_ENV, WARM
from runtime.processes import describe_status

__all__ = ["ENV", "PRELOAD_EXTRA", "STEP_ENV", "WARM", "StepFailed", "claim", "describe_status", "run_step", "start"]
