"""The per-row rounding problem every solver answers (the answer: :mod:`roundlab.result`).

A :class:`RoundingProblem` is one segment of ``R`` rows × ``d`` weights. Row ``r`` chooses, per element, one of two
candidates ``δ_j ∈ {lo_j, hi_j}`` (``lo = Q_floor(w) − w``, ``hi = Q_ceil(w) − w``; equal where the clamp binds, so
such an element has no choice) to minimise

    L_r(δ) = δ M δᵀ = (1/N) Σ_n (δ · x̄_n)²,   M = X̄ᵀX̄ / N   (SOLVERS.md; ERQ_SPEC §11: ERQ's μμᵀ + Σ is this M).

Rows are independent. The objective data is either ``M`` ("proxy") or the N samples ``X`` themselves ("samples",
``M`` is then derived exactly as ``XᵀX/N``); either is shared by all rows, ``(d, d)`` / ``(N, d)``, or given per row,
``(R, d, d)`` / ``(R, N, d)``. Sign convention: ``δ = quantized − FP`` (the release's).

Everything is stored in float64 on the weights' device; solvers compute objectives in float64.
A :class:`RoundingResult` carries the chosen ``δ`` (an exact copy of ``lo`` or ``hi`` per element, so ``w + δ`` is
the grid point ``Q_floor(w)`` or ``Q_ceil(w)``; :meth:`RoundingProblem.quantized` returns the grid values
themselves), the per-row objective and, per row, what the solver can actually claim (:class:`Status`).
"""

from __future__ import annotations


import torch

from roundlab.errors import RoundlabError
from roundlab.quant.grid import check_bits, fake_quant
from roundlab.problem_data import as_float_tensor, check_finite, objective_data, proxy_matrix  # noqa: F401
from roundlab.result import F64, RoundingResult, Status, relative_gap  # noqa: F401  (their historical home)


class RoundingProblem:
    """R independent rows of a binary choice ``δ_j ∈ {lo_j, hi_j}`` minimising ``δ M δᵀ``.

    Build one with :meth:`from_grid` (weights + grid, the usual way) or :meth:`from_candidates` (any two candidate
    arrays; no grid, so :meth:`quantized` is unavailable). Exactly one of ``M`` (proxy) and ``X`` (samples) is given.

    Attributes: ``lo``, ``hi`` (R, d) float64; ``M`` (d, d) or (R, d, d) float64, symmetrised; ``X`` (samples kind
    only); ``w``, ``scale``, ``zero``, ``bits``, ``q_lo``, ``q_hi`` (grid problems only).
    """

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, *, M: torch.Tensor | None = None,
                 X: torch.Tensor | None = None, w: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 zero: torch.Tensor | None = None, bits: int | None = None, q_lo: torch.Tensor | None = None,
                 q_hi: torch.Tensor | None = None, check_psd: bool = True):
        lo = as_float_tensor(lo, "lo")
        hi = as_float_tensor(hi, "hi")
        if lo.dim() != 2 or lo.shape != hi.shape:
            raise RoundlabError(f"lo and hi must both be (R, d), got {tuple(lo.shape)} and {tuple(hi.shape)}")
        R, d = lo.shape
        if R < 1 or d < 1:
            raise RoundlabError(f"a rounding problem needs at least one row and one column, got {R}×{d}")
        device = lo.device
        self.lo = lo.to(F64)
        self.hi = hi.to(device=device, dtype=F64)
        check_finite(self.lo, "lo")
        check_finite(self.hi, "hi")
        if bool((self.lo > self.hi).any()):
            raise RoundlabError("every floor candidate must be <= its ceil candidate (lo <= hi)")
        self.M, self.X = objective_data(M, X, R, d, device, check_psd)
        self.w, self.scale, self.zero, self.bits, self.q_lo, self.q_hi = w, scale, zero, bits, q_lo, q_hi

    # ----------------------------------------------------------------------------------------------- builders
    @classmethod
    def from_grid(cls, w: torch.Tensor, scale, zero, bits: int, *, M: torch.Tensor | None = None,
                  X: torch.Tensor | None = None, check_psd: bool = True) -> "RoundingProblem":
        """The rounding problem of weights ``w`` (R, d) on the grid ``(scale, zero, bits)``.

        ``scale``/``zero`` broadcast to (R, d): per row ``(R, 1)``, or per element (a dual-uniform row, whose column
        sets have different grids). Candidates come from :func:`~roundlab.quant.grid.fake_quant` in the weights' own
        dtype, so they are the very grid points a caller computes with the same function.
        """
        check_bits(bits)
        w = as_float_tensor(w, "w")
        if w.dim() != 2:
            raise RoundlabError(f"w must be (R, d), got shape {tuple(w.shape)}")
        check_finite(w, "w")
        try:
            scale = torch.as_tensor(scale, dtype=w.dtype, device=w.device).expand(w.shape)
            zero = torch.as_tensor(zero, dtype=w.dtype, device=w.device).expand(w.shape)
        except RuntimeError:
            raise RoundlabError(f"scale/zero must broadcast to w's shape {tuple(w.shape)}") from None
        check_finite(scale, "scale")
        check_finite(zero, "zero")
        if bool((scale <= 0).any()):
            raise RoundlabError("scale must be > 0 everywhere")
        q_lo = fake_quant(w, scale, zero, bits, "floor")
        q_hi = fake_quant(w, scale, zero, bits, "ceil")
        w64 = w.to(F64)
        return cls(q_lo.to(F64) - w64, q_hi.to(F64) - w64, M=M, X=X, w=w, scale=scale, zero=zero, bits=bits,
                   q_lo=q_lo, q_hi=q_hi, check_psd=check_psd)

    @classmethod
    def from_candidates(cls, lo: torch.Tensor, hi: torch.Tensor, *, M: torch.Tensor | None = None,
                        X: torch.Tensor | None = None, check_psd: bool = True) -> "RoundingProblem":
        """A problem from explicit candidates (no grid): ``δ_j ∈ {lo_j, hi_j}``."""
        return cls(lo, hi, M=M, X=X, check_psd=check_psd)

    # ----------------------------------------------------------------------------------------------- shape
    @property
    def rows(self) -> int:
        return self.lo.shape[0]

    @property
    def d(self) -> int:
        return self.lo.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.lo.shape)

    @property
    def device(self) -> torch.device:
        return self.lo.device

    @property
    def shared(self) -> bool:
        """True if all rows share one ``M`` (and one ``X``)."""
        return self.M.dim() == 2

    @property
    def kind(self) -> str:
        """``"samples"`` if built from ``X``, else ``"proxy"``."""
        return "proxy" if self.X is None else "samples"

    @property
    def step(self) -> torch.Tensor:
        """``hi − lo`` (R, d): the grid step, 0 where the clamp binds."""
        return self.hi - self.lo

    @property
    def free(self) -> torch.Tensor:
        """(R, d) bool: elements with two distinct candidates."""
        return self.hi > self.lo

    @property
    def diag(self) -> torch.Tensor:
        """Diagonal of ``M``, broadcastable to (R, d)."""
        return torch.diagonal(self.M, dim1=-2, dim2=-1)

    def __repr__(self) -> str:
        grid = f", bits={self.bits}" if self.bits is not None else ""
        return (f"RoundingProblem({self.rows}×{self.d}, {self.kind}, {'shared' if self.shared else 'per-row'} M"
                f"{grid}, device={self.device})")

    # ----------------------------------------------------------------------------------------------- algebra
    def matvec(self, delta: torch.Tensor) -> torch.Tensor:
        """Per row ``M δ`` (R, d) in float64."""
        delta = delta.to(F64)
        if self.shared:
            return delta @ self.M
        return torch.bmm(self.M, delta.unsqueeze(-1)).squeeze(-1)

    def columns(self, j: torch.Tensor) -> torch.Tensor:
        """``M[:, j_r]`` for each row r (``j``: (R,) long) → (R, d). ``M`` is symmetric, so this is row ``j_r``."""
        if self.shared:
            return self.M.index_select(0, j)
        return self.M[torch.arange(self.rows, device=j.device), j]

    def objective(self, delta: torch.Tensor, source: str = "M") -> torch.Tensor:
        """Per-row loss (R,) float64: ``δ M δᵀ`` (``source="M"``) or ``(1/N) Σ_n (δ·x_n)²`` (``"samples"``).

        The two agree up to round-off (``M`` is ``XᵀX/N`` for a samples problem)."""
        delta = delta.to(device=self.device, dtype=F64)
        if delta.shape != self.lo.shape:
            raise RoundlabError(f"delta must have shape {self.shape}, got {tuple(delta.shape)}")
        if source == "M":
            return (self.matvec(delta) * delta).sum(-1)
        if source == "samples":
            if self.X is None:
                raise RoundlabError("this problem has no samples X (built from M); use source='M'")
            if self.X.dim() == 2:
                e = delta @ self.X.T
            else:
                e = torch.bmm(self.X, delta.unsqueeze(-1)).squeeze(-1)
            return (e * e).mean(-1)
        raise RoundlabError(f"source must be 'M' or 'samples', got {source!r}")

    # ----------------------------------------------------------------------------------------------- candidates
    def nearest(self) -> torch.Tensor:
        """Round-to-nearest δ (R, d): ``fake_quant(w, "round") − w`` (half-to-even), taken from ``{lo, hi}`` exactly.

        Without a grid: the candidate of smaller magnitude (ties → ``hi``)."""
        if self.w is not None:
            q = fake_quant(self.w, self.scale, self.zero, self.bits, "round")
            up = q == self.q_hi
        else:
            up = self.hi.abs() <= self.lo.abs()
        return torch.where(up, self.hi, self.lo)

    def up(self, delta: torch.Tensor) -> torch.Tensor:
        """(R, d) bool: where ``delta`` takes the ceil candidate (False on clamped elements)."""
        return (delta.to(F64) == self.hi) & self.free

    def delta_from_up(self, up: torch.Tensor) -> torch.Tensor:
        """δ from a boolean choice per element (True → ``hi``)."""
        return torch.where(up.to(torch.bool), self.hi, self.lo)

    def flipped(self, delta: torch.Tensor) -> torch.Tensor:
        """The other candidate of every element (the same one where the clamp binds)."""
        return torch.where(delta == self.hi, self.lo, self.hi)

    def on_candidates(self, delta: torch.Tensor) -> torch.Tensor:
        """(R, d) bool: ``delta`` equals ``lo`` or ``hi`` exactly."""
        delta = delta.to(device=self.device, dtype=F64)
        return (delta == self.lo) | (delta == self.hi)

    def snap(self, delta: torch.Tensor, what: str = "init", rtol: float = 1e-6) -> torch.Tensor:
        """Map ``delta`` (any float dtype) to the exact candidates; error if an element is not close to either."""
        delta = as_float_tensor(delta, what)
        if tuple(delta.shape) != self.shape:
            raise RoundlabError(f"{what} must have shape {self.shape}, got {tuple(delta.shape)}")
        delta = delta.to(device=self.device, dtype=F64)
        dlo, dhi = (delta - self.lo).abs(), (delta - self.hi).abs()
        tol = rtol * torch.maximum(self.step, torch.maximum(self.lo.abs(), self.hi.abs())).clamp_min(1e-30)
        bad = ~(torch.minimum(dlo, dhi) <= tol)                 # NaN compares False: refused, not snapped
        if bool(bad.any()):
            raise RoundlabError(f"{what} is not on the floor/ceil candidates at {int(bad.sum())} element(s)")
        return torch.where(dhi < dlo, self.hi, self.lo)

    def quantized(self, delta: torch.Tensor) -> torch.Tensor:
        """The grid values ``Q_floor(w)``/``Q_ceil(w)`` (weights' dtype) that ``delta`` chooses."""
        if self.q_lo is None:
            raise RoundlabError("this problem was built from candidates, not a grid; quantized() needs from_grid")
        return torch.where(self.up(delta), self.q_hi, self.q_lo)

    # ----------------------------------------------------------------------------------------------- subsets
    def subproblem(self, rows) -> "RoundingProblem":
        """The problem restricted to ``rows`` (a slice, list or index tensor)."""
        idx = torch.as_tensor(rows, device=self.device) if not isinstance(rows, slice) else rows
        if isinstance(idx, torch.Tensor) and idx.dim() == 0:
            idx = idx.reshape(1)
        pick = (lambda t: None if t is None else t[idx])
        new = object.__new__(RoundingProblem)
        new.lo, new.hi = self.lo[idx], self.hi[idx]
        new.M = self.M if self.shared else self.M[idx]
        new.X = None if self.X is None else (self.X if self.X.dim() == 2 else self.X[idx])
        new.w, new.scale, new.zero, new.q_lo, new.q_hi = (pick(self.w), pick(self.scale), pick(self.zero),
                                                         pick(self.q_lo), pick(self.q_hi))
        new.bits = self.bits
        if new.lo.shape[0] < 1:
            raise RoundlabError("subproblem needs at least one row")
        return new

    def to(self, device) -> "RoundingProblem":
        """A copy on ``device``."""
        new = object.__new__(RoundingProblem)
        for k, v in self.__dict__.items():
            setattr(new, k, v.to(device) if isinstance(v, torch.Tensor) else v)
        return new
