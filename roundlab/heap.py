"""Handing freed heap memory back to the OS between batches.

A pass over many batches allocates and frees many batch-sized temporaries interleaved with longer-lived ones (a
layer's statistics, the rows one statistics block holds over). glibc keeps the freed pages mapped and reuses them
only for requests that fit between the live ones, so the resident size creeps up with every batch — with the number
of images, not with what is live. ``malloc_trim(0)`` returns every wholly free page (inside the heap too, not just at
its top). Measured on DeiT-S's statistics pass over 8 batches of 32 images, one thread: 1737–2010 MB resident after
each batch without it, 1396–1497 MB with it; the call itself costs milliseconds.
"""

from __future__ import annotations

import ctypes
import functools

import torch


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def return_freed_memory() -> None:
    """Hand the heap pages freed so far back to the OS (glibc's ``malloc_trim``); a no-op where the C library has
    none (macOS, musl, Windows)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def shares_larger_storage(t: torch.Tensor) -> bool:
    """Whether ``t`` is a view into a storage larger than itself (keeping it would keep all of that alive)."""
    return t.untyped_storage().nbytes() > t.numel() * t.element_size()


def compact(t: torch.Tensor) -> torch.Tensor:
    """``t``, copied when it is a view of a larger storage (so that the rest of that storage can be freed)."""
    return t.clone() if shares_larger_storage(t) else t
