"""One intra-op thread for the computations whose results are persisted, so they do not depend on the machine.

A float64 reduction (a Gram matrix ``AᵀA``, a matrix-vector product inside a solver) is summed in a different order
with another number of BLAS/OpenMP threads, which changes the last bits — and through a rounding decision, possibly
an integer code. The pipeline runs each layer's Aqer and Wqer under :func:`fixed_threads`, so a run resumed in a
shell with another ``OMP_NUM_THREADS`` (or on another core count) continues bit-identically. Parallelism comes from
the fan-out executors (``--executor process|ray``), which give every worker one thread anyway.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def fixed_threads(n: int = 1):
    """Run the block with ``n`` torch intra-op threads, then restore the caller's setting."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
