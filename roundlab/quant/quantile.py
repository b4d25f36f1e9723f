"""Exact quantiles with linear interpolation, for tensors of any size (ERQ_SPEC §0, §3.1).

``torch.quantile`` refuses inputs with more than 2**24 elements (e.g. a ViT-B fc2 input over 32 images), so every
quantizer here sorts once (or takes the tails it needs, :class:`OrderStatistics`; batch by batch,
:class:`TailStatistics`) and interpolates between order statistics itself. The interpolation is the one of
``torch.quantile`` / ``numpy.percentile`` (``method="linear"``): rank ``p * (n - 1)``, linear between its neighbours
(``torch.lerp``).

Which ``p`` (``rank=``, :data:`RANKS`):

* ``"float64"`` (default): ``p`` as given, rank in float64 — numpy's result, and torch.quantile's on float64 input.
* ``"release"``: what the authors' code gets. It calls ``torch.quantile`` on float32 tensors, which holds ``p`` in
  the input's dtype: ``p`` is rounded to float32 first (0.99999 → 0.99998998641968), the rank then taken in float64.
  Tensors of more than 2**24 elements make torch.quantile refuse and the release fall back to numpy, with ``p`` in
  float64. (Checked against ``torch.quantile`` on float32 data: identical in 6000 of 6000 random cases.)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from roundlab.errors import check
from roundlab.validate import check_choice

#: Rank conventions (see the module docstring).
RANKS = ("float64", "release")
#: The largest input torch.quantile accepts (the release falls back to numpy above it).
TORCH_QUANTILE_MAX = 2**24


def effective_p(p: float, n: int, rank: str = "float64") -> float:
    """The probability whose rank ``p·(n−1)`` (float64) a quantile of ``n`` values uses under ``rank``."""
    if rank == "release" and n <= TORCH_QUANTILE_MAX:
        return float(np.float32(p))
    return float(p)


def quantile_of_sorted(sorted_rows: torch.Tensor, p: float, rank: str = "float64") -> torch.Tensor:
    """The ``p``-quantile of every row of ``sorted_rows`` (sorted ascending along the last dim); shape ``[...]``."""
    n = sorted_rows.shape[-1]
    pos = effective_p(p, n, rank) * (n - 1)
    i0 = min(max(int(math.floor(pos)), 0), n - 1)
    i1 = min(i0 + 1, n - 1)
    lo, hi = sorted_rows[..., i0], sorted_rows[..., i1]
    return torch.lerp(lo, hi, pos - i0) if i1 != i0 else lo


def quantile(x: torch.Tensor, p: float, dim: int = -1, rank: str = "float64") -> torch.Tensor:
    """The ``p``-quantile of ``x`` along ``dim`` (that dim removed), exact for any number of elements."""
    return quantile_of_sorted(torch.sort(x.movedim(dim, -1), dim=-1).values, p, rank)


#: A single row this many times longer than its tail is first cut down to the entries past a threshold.
_PREFILTER_RATIO = 64
_SAMPLE_STRIDE = 16


def extreme_values(rows: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """``torch.topk(rows, k, largest=largest, sorted=True).values`` (the same values), faster for one long row.

    A single row much longer than ``k`` is first cut to its entries at or past a threshold — the matching extreme
    of every 16th entry, chosen so that about 2k entries pass — and topk runs on those. It is exact whenever at
    least k entries pass (then they hold the k extremes); otherwise it falls back to topk on the whole row.
    """
    n = rows.shape[-1]
    if rows.dim() != 2 or rows.shape[0] != 1 or k < 1 or n < _PREFILTER_RATIO * k:
        return torch.topk(rows, k, dim=-1, largest=largest, sorted=True).values
    sample = rows[:, ::_SAMPLE_STRIDE]
    k_sample = min(2 * k // _SAMPLE_STRIDE + 16, sample.shape[-1])
    threshold = torch.topk(sample, k_sample, dim=-1, largest=largest, sorted=True).values[0, -1]
    passed = rows[rows >= threshold] if largest else rows[rows <= threshold]
    if passed.numel() < k:
        return torch.topk(rows, k, dim=-1, largest=largest, sorted=True).values
    return torch.topk(passed, k, largest=largest, sorted=True).values[None, :]


def tail_sizes(n: int, ps, rank: str = "float64") -> tuple[int, int]:
    """``(k_bottom, k_top)``: how many of the smallest and of the largest of ``n`` values the ``ps`` quantiles (and
    the min and max) read, with their ranks taken under ``rank``."""
    idx = {0, n - 1}
    for p in ps:
        i0 = min(max(int(math.floor(effective_p(p, n, rank) * (n - 1))), 0), n - 1)
        idx |= {i0, min(i0 + 1, n - 1)}
    low = [i for i in idx if i < n / 2]
    high = [i for i in idx if i >= n / 2]
    return (max(low) + 1 if low else 0), (n - min(high) if high else 0)


class OrderStatistics:
    """The order statistics of every row of a 2-D tensor that a set of quantiles needs, found without a full sort.

    Percentile searches only look at the tails (p >= 0.97 and 1 - p), so for long rows the needed smallest and
    largest entries come from two ``topk`` calls, which is much cheaper than sorting tens of millions of values;
    rows short enough (or quantiles central enough) are sorted outright. ``quantile(p)`` must be called with one of
    the ``ps`` given at construction (0 and 1, i.e. min and max, are always available); ``rank`` as in
    :func:`effective_p`.
    """

    def __init__(self, rows: torch.Tensor, ps, rank: str = "float64") -> None:
        check_choice("quantile rank", rank, RANKS)
        n = rows.shape[-1]
        self.n, self.rank = n, rank
        self.k_bottom, self.k_top = tail_sizes(n, ps, rank)
        if 4 * (self.k_bottom + self.k_top) >= n:
            self.sorted = torch.sort(rows, dim=-1).values
        else:
            self.sorted = None
            self.bottom = extreme_values(rows, self.k_bottom, largest=False)
            self.top = extreme_values(rows, self.k_top, largest=True).flip(-1)

    @classmethod
    def from_tails(cls, n: int, bottom: torch.Tensor, top: torch.Tensor, rank: str = "float64") -> "OrderStatistics":
        """The order statistics of rows of ``n`` values from their ``k_bottom`` smallest and ``k_top`` largest
        entries, both ascending (:class:`TailStatistics` gathers them batch by batch)."""
        check_choice("quantile rank", rank, RANKS)
        stats = cls.__new__(cls)
        stats.n, stats.rank, stats.sorted = n, rank, None
        stats.bottom, stats.top = bottom, top
        stats.k_bottom, stats.k_top = bottom.shape[-1], top.shape[-1]
        return stats

    def at(self, i: int) -> torch.Tensor:
        """The i-th smallest entry (0-based) of every row."""
        if self.sorted is not None:
            return self.sorted[..., i]
        if i < self.k_bottom:
            return self.bottom[..., i]
        j = i - (self.n - self.k_top)
        if not 0 <= j < self.k_top:
            raise IndexError(f"order statistic {i} was not prepared")
        return self.top[..., j]

    def quantile(self, p: float) -> torch.Tensor:
        pos = effective_p(p, self.n, self.rank) * (self.n - 1)
        i0 = min(max(int(math.floor(pos)), 0), self.n - 1)
        i1 = min(i0 + 1, self.n - 1)
        lo = self.at(i0)
        return torch.lerp(lo, self.at(i1), pos - i0) if i1 != i0 else lo


class TailStatistics:
    """:class:`OrderStatistics` of rows that arrive in batches (streamed calibration): every row's ``k_bottom``
    smallest and ``k_top`` largest entries over all batches so far, merged batch by batch with ``topk``.

    Exact (order statistics are values; no sketch): the quantiles equal those of the concatenated rows. The ranks
    need the final row length ``n``, so it is taken from the first batch as ``length · total_images / images``
    (each image adds the same number of entries to a row) and checked on every batch and at the end. Held: the two
    tails, ``(1 − p_min)·n`` entries per side and row at most (all ``n`` for rows too short to be worth a tail).
    """

    def __init__(self, ps, total_images: int, rank: str = "float64") -> None:
        check_choice("quantile rank", rank, RANKS)
        self.ps, self.total_images, self.rank = tuple(ps), int(total_images), rank
        self.n: int | None = None
        self.seen = 0
        self.bottom: torch.Tensor | None = None
        self.top: torch.Tensor | None = None

    def add(self, rows: torch.Tensor, images: int) -> None:
        """One batch: the 2-D ``rows`` (every row's entries from ``images`` images)."""
        length = rows.shape[-1]
        if self.n is None:
            self.n = length * self.total_images // images
            self.k_bottom, self.k_top = tail_sizes(self.n, self.ps, self.rank)
        check(length * self.total_images == self.n * images,
              f"streamed calibration: a batch of {images} image(s) gave rows of {length} values, not the "
              f"{self.n}/{self.total_images} per image of the first batch")
        self.seen += length
        self.bottom = _merge_tail(self.bottom, rows, self.k_bottom, largest=False)
        self.top = _merge_tail(self.top, rows, self.k_top, largest=True)

    @property
    def held_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.bottom, self.top) if t is not None)

    def statistics(self) -> OrderStatistics:
        """The order statistics of all rows seen (their full length must have arrived)."""
        check(self.n is not None and self.seen == self.n,
              f"streamed calibration: rows of {self.seen} values arrived, {self.n} expected")
        return OrderStatistics.from_tails(self.n, self.bottom, self.top.flip(-1), self.rank)


def _merge_tail(tail: torch.Tensor | None, rows: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """The ``k`` smallest (ascending) or largest (descending) entries of every row of ``tail`` and ``rows``.

    A single row whose tail is full first drops the new entries short of its k-th extreme so far (they cannot enter
    the tail; exact), so later batches cost a comparison pass rather than a top-k."""
    if tail is not None and tail.shape[0] == 1 and 0 < k == tail.shape[-1]:
        bound = tail[0, -1]
        rows = (rows[rows >= bound] if largest else rows[rows <= bound])[None, :]
    both = rows if tail is None else torch.cat([tail, rows], dim=-1)
    return extreme_values(both, min(k, both.shape[-1]), largest)


def masked_row_quantile(x: torch.Tensor, mask: torch.Tensor, p: float, empty: float,
                        rank: str = "float64") -> torch.Tensor:
    """Per row of the 2-D ``x``, the ``p``-quantile of the entries where ``mask`` holds; ``empty`` for rows with none.

    Vectorised over rows although each row has its own number of selected entries: the unselected entries are pushed
    to +inf, so after an ascending sort the first ``n_i`` entries of row ``i`` are its selected ones, in order.
    """
    vals = torch.sort(torch.where(mask, x, torch.full_like(x, math.inf)), dim=-1).values
    n = mask.sum(dim=-1)
    p_row = torch.full(n.shape, effective_p(p, 1, rank), dtype=torch.float64, device=n.device)
    p_row = torch.where(n <= TORCH_QUANTILE_MAX, p_row, torch.full_like(p_row, float(p)))
    pos = p_row * (n.to(torch.float64) - 1).clamp_min(0)
    i0 = pos.floor().long()
    i1 = torch.minimum(i0 + 1, (n - 1).clamp_min(0))
    lo = vals.gather(-1, i0[:, None]).squeeze(-1)
    hi = vals.gather(-1, i1[:, None]).squeeze(-1)
    frac = (pos - i0.to(torch.float64)).to(x.dtype)
    # torch.quantile interpolates with torch.lerp; the default keeps its one-sided formula (1 ulp apart at most),
    # so the dual-uniform outlier marks of existing runs are unchanged.
    between = torch.lerp(lo, hi, frac) if rank == "release" else lo + frac * (hi - lo)
    q = torch.where(i1 > i0, between, lo)
    return torch.where(n > 0, q, torch.full_like(q, empty))
