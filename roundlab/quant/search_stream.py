"""A quantizer's percentile-MSE search over a tensor that arrives in batches (streamed activation calibration).

The unstreamed searches (:func:`~roundlab.quant.uniform.search_uniform`, :func:`~roundlab.quant.log2.search_log2`)
read a whole tensor twice: its order statistics give the candidate grids, then every candidate's mean squared
fake-quantization error picks one. Streamed, that is two passes over the batches:

* pass 0 gathers the exact tails the candidates need (:class:`~roundlab.quant.quantile.TailStatistics`), so the
  candidates are bit-identical to the unstreamed ones;
* pass 1 sums every candidate's squared error over the batches in float64.

The pick is the unstreamed one (strict <, the earliest candidate wins ties). With a single batch the errors are
taken exactly as the unstreamed search takes them (its float32 mean), so the result is bit-identical; over several
batches the float64 sums can only pick differently where two candidates' float32 means were within rounding (a
near tie). Memory: the two tails and one float64 sum per candidate and row — never a batch beyond the one in hand.

Each quantizer kind plugs in by returning a :class:`SearchStream` subclass from ``Quantizer.search_stream``.
"""

from __future__ import annotations

import torch

from roundlab.errors import RoundlabError, check
from roundlab.quant.base import check_finite
from roundlab.quant.quantile import OrderStatistics, TailStatistics

F64 = torch.float64


def pick_best(errors: list[torch.Tensor], candidates: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Per row, the candidate with the smallest error; a later one only if strictly smaller (earliest wins ties)."""
    best_err, best = errors[0], candidates[0]
    for err, cand in zip(errors[1:], candidates[1:]):
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = tuple(torch.where(better, c, b) for c, b in zip(cand, best))
    return best


class SearchStream:
    """One quantizer's streamed search: ``observe(pass_, x, images)`` for every batch of each of its ``passes``,
    ``end_pass(pass_)`` after each, then ``finish()`` sets the quantizer's parameters.

    A kind implements ``rows(x)`` (the 2-D rows in the search's dtype), ``candidates(stats)`` (tuples of tensors,
    one per percentile), ``diff(v, cand)`` (fake-quantized minus original), ``mean(sq)`` (the unstreamed error of
    the squared differences), ``total(sq)`` (their float64 sum per row) and ``apply(best)``.
    """

    passes = 2

    def __init__(self, quantizer, total_images: int, ps) -> None:
        self.quantizer = quantizer
        self.tails = TailStatistics(ps, total_images, quantizer.quantile_rank)
        self.batches = 0
        self.cands: list[tuple[torch.Tensor, ...]] | None = None
        self.errors: list[torch.Tensor] | None = None

    # -- what a kind supplies ---------------------------------------------------------------------------------------
    def rows(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def candidates(self, stats: OrderStatistics) -> list[tuple[torch.Tensor, ...]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def diff(self, v: torch.Tensor, cand: tuple[torch.Tensor, ...]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, sq: torch.Tensor) -> torch.Tensor:
        return sq.mean(dim=-1)

    def total(self, sq: torch.Tensor) -> torch.Tensor:
        return sq.sum(dim=-1)

    def apply(self, best: tuple[torch.Tensor, ...]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the two passes ---------------------------------------------------------------------------------------------
    def observe(self, pass_: int, x: torch.Tensor, images: int) -> None:
        """One batch ``x`` (the quantizer's input for ``images`` images) of pass ``pass_`` (0 or 1)."""
        x = x.detach()
        what = self.quantizer.describe()
        check(x.numel() > 0, f"{what} got an empty tensor to calibrate on")
        if pass_ == 0:
            check_finite(x, what)
            self.tails.add(self.rows(x), images)
            self.batches += 1
            return
        if self.cands is None:
            raise RoundlabError(f"{what}: streamed search pass 1 before pass 0 ended")
        v = self.rows(x)
        errs = []
        for cand in self.cands:
            d = self.diff(v, cand)
            errs.append(self.mean(d.pow_(2)) if self.batches == 1 else self.total(d.to(F64).pow_(2)))
        self.errors = errs if self.errors is None else [e + s for e, s in zip(self.errors, errs)]

    def end_pass(self, pass_: int) -> None:
        """After pass 0: the candidate grids, from the exact tails (which are then dropped); after pass 1: nothing."""
        if pass_ == 0:
            self.cands = self.candidates(self.tails.statistics())
            self.tails = None

    @property
    def held_bytes(self) -> int:
        """Bytes this search holds between batches (tails, candidates, error sums)."""
        held = self.tails.held_bytes if self.tails is not None else 0
        for group in (self.cands or []) + [tuple(self.errors or [])]:
            held += sum(t.numel() * t.element_size() for t in group)
        return held

    def finish(self) -> None:
        """Pick the best candidate (as the unstreamed search does) and set it on the quantizer."""
        check(self.errors is not None, f"{self.quantizer.describe()}: streamed search finished before pass 1")
        self.apply(pick_best(self.errors, self.cands))
