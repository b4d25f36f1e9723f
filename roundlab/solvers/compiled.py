"""``njit`` from numba where installed (``pip install roundlab[bnb]``), else a no-op decorator: the kernels written
for it (``bnb_kernel``, ``mixing_kernel``) then run as plain Python. ``COMPILED`` says which."""

from __future__ import annotations

try:  # optional: the same source runs as Python without it
    from numba import njit
    COMPILED = True
except ImportError:  # pragma: no cover - exercised where numba is absent
    COMPILED = False

    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda f: f
