"""``miqp``: exact rounding by mixed-integer programming, row by row, with the status each backend can prove.

Formulation (per row, free elements only; clamped elements have one candidate). Centre at the warm start ``δ⁰``
(``init``, else the answer of the ``warm_start`` solver — default ``tabu``, the best heuristic measured — else
nearest) and let ``x_j ∈ {0,1}`` flip element j to its
other candidate, ``Δ_j = other_j − δ⁰_j``. Divide by ``f⁰ = L(δ⁰)`` so the objective is O(1) (unscaled, CBC called a
point 0.8% above the optimum "Optimal"; SOLVERS.md) and the warm start scores exactly 1:

* ``objective="proxy"``: ``L/f⁰ = 1 + Σ_j c_j x_j + Σ_{i<j} 2Q_ij x_i x_j`` with ``c_j = (Δ_j g⁰_j + Δ_j² M_jj)/f⁰``,
  ``g⁰ = 2Mδ⁰``, ``Q_ij = Δ_i Δ_j M_ij / f⁰``. PuLP is linear-only, so the products are linearised exactly:
  ``linearization="fortet"`` — one continuous ``y_ij ∈ [0,1]`` per pair with only the McCormick/Fortet rows its
  sign needs (``y ≥ x_i + x_j − 1`` if ``Q_ij > 0``; ``y ≤ x_i, y ≤ x_j`` if ``Q_ij < 0``); ``"glover"`` — one
  ``z_i = x_i Σ_{j>i} 2Q_ij x_j`` per element with 2 rows each (compact, weaker relaxation); ``"auto"`` — each
  backend's faster one up to ``fortet_max_d`` free elements (measured on ViT-like rows, d = 20–32: glover for CBC
  and HiGHS, e.g. HiGHS 0.17 s vs 0.83 s at d=32; fortet for SCIP, 1.0 s vs 2.6 s), glover above (fortet's
  d(d−1)/2 variables make PuLP's model building the bottleneck at large d).
* ``objective="samples"`` (the paper's "MIQP w/o proxy"): the loss built from the N samples, ``(1/N)Σ_n e_n²`` with
  a continuous ``e_n = (δ⁰ + Δx)·x̄_n`` per sample; ``Σ e_n² = Σ_n a_n e_n + Σ_j x_j r_j`` (``a_n = δ⁰·x̄_n``,
  ``r_j = Σ_n A_nj e_n``) and ``x_j r_j`` is linearised exactly with Glover's bounds. The problem must carry ``X``.

Backends (:data:`BACKENDS`): ``cbc``, ``highs``, ``scip`` through PuLP (``PULP_CBC_CMD``, ``HiGHS`` via highspy,
``SCIP_PY`` via pyscipopt), ``cvxpy-scip``, a native MIQP (convex quadratic objective with boolean variables;
ignores ``linearization``), and ``gurobi`` (gurobipy, optional: a native binary QP, warm-started; the pip
licence's 2000-variable limit covers every row here, a larger model is one clear error). All run with relative and
absolute gap 0, a per-row ``time_limit``, ``threads``, and the warm start passed where the backend takes one (CBC and SCIP through PuLP's ``warmStart``; HiGHS via
``setSolution``; cvxpy's SCIP interface has none).

Default backend ``cvxpy-scip``: the only one that proved ViT-like rows of d = 48 (3–11 s) and d = 64 (28 s) within
60 s on 2 cores, where every PuLP linearisation timed out; at d ≤ 32 the PuLP backends are faster (0.1–1 s/row).

Truth, not labels: PuLP 3.x says "Optimal" for time-limited CBC/HiGHS runs, so the status is read from the solution
status and the backend's own bound (HiGHS ``mip_dual_bound``, SCIP ``getDualbound``, CBC's log: "Optimal solution
found" with gaps 0, or the "Lower bound" it prints when stopped). A row is OPTIMAL only if the backend finished
(optimal status) *and* its bound is within ``gap_tol`` of the returned objective; TIME_LIMIT if stopped by the limit;
FEASIBLE otherwise. The answer is never worse than the warm start: if the backend's point is worse (or missing),
the warm start is returned and the row is FALLBACK (unless the bound proves it optimal). Bounds are reported after
subtracting ``bound_tol`` (scaled units) for the backends' tolerances. ``iterations`` = branch-and-bound nodes.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from roundlab.errors import RoundlabError
from roundlab.problem import F64, Status
from roundlab.solvers.base import (CODE, Solution, Solver, SolverConfig, check_bool, check_choice, check_float,
                                   check_int)
from roundlab.solvers.registry import register_solver, solver_class


# --------------------------------------------------------------------------------------------------- row data
@dataclass
class RowData:
    """One row's scaled model: flips ``x`` from the warm start; the warm start scores 1."""

    k: int
    c: np.ndarray                    # (k,) linear coefficients incl. the diagonal (proxy)
    Q: np.ndarray                    # (k, k) Δ_i Δ_j M_ij / f⁰, with its diagonal (PSD)
    a: np.ndarray | None = None      # (N,) samples: δ⁰·x̄_n / sqrt(N f⁰)
    A: np.ndarray | None = None      # (N, k) samples: Δ_j x̄_nj / sqrt(N f⁰)

    def value(self, x: np.ndarray, objective: str) -> float:
        """``L/f⁰`` at flips ``x`` (0/1), computed directly (not from a backend's auxiliary variables)."""
        if objective == "samples":
            e = self.a + self.A @ x
            return float(e @ e)
        return float(1.0 + self.c_lin @ x + x @ self.Q @ x)

    @property
    def c_lin(self) -> np.ndarray:
        """Linear part when the quadratic keeps its diagonal (x_j² = x_j): ``c − diag(Q)``."""
        return self.c - np.diag(self.Q)


@dataclass
class BackendResult:
    x: np.ndarray | None             # 0/1 flips, or None if the backend returned no point
    raw: str                         # the backend's own status words
    finished: bool                   # the backend says it proved optimality (its optimal status)
    time_limited: bool
    bound: float | None = None       # lower bound on L/f⁰ (the scaled objective including its constant)
    nodes: int = 0


# --------------------------------------------------------------------------------------------------- PuLP models
def _pulp_model(data: RowData, objective: str, linearization: str):
    """A PuLP model whose objective is ``L/f⁰ − offset``; returns (model, x vars, offset)."""
    import pulp

    k = data.k
    lp = pulp.LpProblem("rounding", pulp.LpMinimize)
    if hasattr(lp, "add_variable"):         # PuLP ≥ 3.3: variables belong to the model
        var = lp.add_variable
    else:
        def var(name, lowBound=None, upBound=None, cat="Continuous"):
            return pulp.LpVariable(name, lowBound=lowBound, upBound=upBound, cat=cat)
    x = [var(f"x{j}", cat=pulp.LpBinary) for j in range(k)]
    for v in x:
        v.setInitialValue(0)
    terms = []
    if objective == "proxy":
        offset = 1.0
        terms += [(x[j], float(data.c[j])) for j in range(k) if data.c[j] != 0]
        if linearization == "fortet":
            iu, ju = np.triu_indices(k, 1)
            q = 2 * data.Q[iu, ju]
            for i, j, qij in zip(iu.tolist(), ju.tolist(), q.tolist()):
                if qij == 0:
                    continue
                y = var(f"y{i}_{j}", lowBound=0, upBound=1)
                y.setInitialValue(0)
                if qij > 0:
                    lp += y >= x[i] + x[j] - 1
                else:
                    lp += y <= x[i]
                    lp += y <= x[j]
                terms.append((y, qij))
        else:  # glover: z_i = x_i · Σ_{j>i} 2Q_ij x_j, minimised onto its lower envelope
            for i in range(k - 1):
                q = 2 * data.Q[i, i + 1:]
                lo_i, hi_i = float(np.minimum(q, 0).sum()), float(np.maximum(q, 0).sum())
                if lo_i == 0 and hi_i == 0:
                    continue
                z = var(f"z{i}")
                z.setInitialValue(0)
                lp += z >= lo_i * x[i]
                lp += z >= pulp.LpAffineExpression([(x[i + 1 + t], float(q[t])) for t in range(k - i - 1)
                                                    if q[t] != 0]) - hi_i * (1 - x[i])
                terms.append((z, 1.0))
    else:  # samples: Σ e_n² = Σ a_n e_n + Σ_j x_j r_j, r_j = Σ_n A_nj e_n, x_j r_j linearised (Glover)
        offset = 0.0
        a, A = data.a, data.A
        N = a.shape[0]
        e = [var(f"e{n}") for n in range(N)]
        for n in range(N):
            lp += pulp.LpAffineExpression([(e[n], 1.0)] + [(x[j], -float(A[n, j])) for j in range(k)
                                                          if A[n, j] != 0]) == float(a[n])
            e[n].setInitialValue(float(a[n]))
        G = A.T @ A
        base = A.T @ a
        for j in range(k):
            lo_j = float(base[j] + np.minimum(G[j], 0).sum())
            hi_j = float(base[j] + np.maximum(G[j], 0).sum())
            r = var(f"r{j}")
            r.setInitialValue(float(base[j]))
            lp += pulp.LpAffineExpression([(r, 1.0)] + [(e[n], -float(A[n, j])) for n in range(N)
                                                       if A[n, j] != 0]) == 0
            z = var(f"z{j}")
            z.setInitialValue(0)
            lp += z >= lo_j * x[j]
            lp += z >= r - hi_j * (1 - x[j])
            terms.append((z, 1.0))
        terms += [(e[n], float(a[n])) for n in range(N) if a[n] != 0]
    lp += pulp.LpAffineExpression(terms)
    return lp, x, offset


def _values(x) -> np.ndarray | None:
    vals = [v.varValue for v in x]
    if any(v is None for v in vals):
        return None
    return (np.asarray(vals, dtype=float) > 0.5).astype(float)


class _PulpBackend:
    requires: tuple[str, ...] = ("pulp",)
    native = False
    linearization = "glover"          # what "auto" uses up to fortet_max_d (measured, see the module docstring)
    bound_tol = 1e-9                  # LP tolerances on an O(1) objective

    def available(self) -> bool:
        import importlib.util
        if any(importlib.util.find_spec(m) is None for m in self.requires):
            return False
        import pulp
        return self.pulp_name in pulp.listSolvers(onlyAvailable=True)

    def solve(self, data: RowData, cfg: "MiqpConfig", objective: str, linearization: str) -> BackendResult:
        import pulp

        lp, x, offset = _pulp_model(data, objective, linearization)
        out = self._run(lp, cfg)
        vals = _values(x) if lp.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) else None
        if out["bound"] == "incumbent":   # the backend proved its incumbent optimal: that value is the bound
            bound = data.value(vals, objective) if vals is not None else None
        else:
            bound = None if out["bound"] is None else out["bound"] + offset
        return BackendResult(vals, out["raw"], out["finished"], out["time_limited"], bound, out["nodes"])


class _CBC(_PulpBackend):
    pulp_name = "PULP_CBC_CMD"
    _NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"

    def _run(self, lp, cfg):
        import pulp

        tmp = tempfile.mkdtemp(prefix="roundlab-cbc-")
        log = os.path.join(tmp, "cbc.log")
        try:
            with warnings.catch_warnings():   # PuLP 3.x warns that 4.0 unbundles CBC; roundlab pins pulp<4
                warnings.simplefilter("ignore", DeprecationWarning)
                solver = pulp.PULP_CBC_CMD(msg=cfg.msg, timeLimit=cfg.time_limit, gapRel=0, gapAbs=0,
                                           threads=cfg.threads, warmStart=True, logPath=log, keepFiles=False)
            lp.solve(solver)
            text = open(log).read() if os.path.exists(log) else ""
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        m = re.search(r"Result - (.*)", text)
        raw = m.group(1).strip() if m else pulp.LpStatus[lp.status]
        finished = raw.startswith("Optimal solution found") and lp.sol_status == pulp.LpSolutionOptimal
        bound = None
        if finished:
            bound = "incumbent"    # CBC prints no separate bound once it has proved optimality (gaps 0)
        else:
            mb = re.search(r"Lower bound:\s*" + self._NUM, text)
            if mb:  # printed with few digits: step down by half a unit of the last printed digit
                s = mb.group(1)
                mant = s.lower().split("e")[0]
                exp = int(s.lower().split("e")[1]) if "e" in s.lower() else 0
                dec = len(mant.split(".")[1]) if "." in mant else 0
                bound = float(s) - 0.5 * 10.0 ** (exp - dec)
        mn = re.search(r"Enumerated nodes:\s*(\d+)", text)
        return {"raw": raw, "finished": finished, "time_limited": "time" in raw.lower(), "bound": bound,
                "nodes": int(mn.group(1)) if mn else 0}


class _HiGHS(_PulpBackend):
    pulp_name = "HiGHS"
    requires = ("pulp", "highspy")

    def _run(self, lp, cfg):
        import highspy
        import pulp

        class WarmHiGHS(pulp.HiGHS):
            """PuLP's HiGHS plus a MIP start from the variables' initial values (setSolution)."""

            def callSolver(self, lp):
                sol = highspy.HighsSolution()
                sol.col_value = [float(v.varValue or 0.0) for v in lp.variables()]
                sol.value_valid = True
                lp.solverModel.setSolution(sol)
                lp.solverModel.run()

        solver = WarmHiGHS(msg=cfg.msg, timeLimit=cfg.time_limit, gapRel=0.0, gapAbs=0.0, threads=cfg.threads)
        lp.solve(solver)
        h = lp.solverModel
        st = h.getModelStatus()
        info = h.getInfo()
        finished = st == highspy.HighsModelStatus.kOptimal
        bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
        return {"raw": h.modelStatusToString(st), "finished": finished,
                "time_limited": st == highspy.HighsModelStatus.kTimeLimit, "bound": bound,
                "nodes": int(info.mip_node_count)}


class _SCIP(_PulpBackend):
    pulp_name = "SCIP_PY"
    requires = ("pulp", "pyscipopt")
    linearization = "fortet"

    def _run(self, lp, cfg):
        import pulp

        solver = pulp.SCIP_PY(msg=cfg.msg, timeLimit=cfg.time_limit, gapRel=0.0, gapAbs=0.0, warmStart=True,
                              threads=cfg.threads)
        lp.solve(solver)
        m = lp.solverModel
        st = m.getStatus()
        bound = float(m.getDualbound())
        return {"raw": st, "finished": st == "optimal", "time_limited": st == "timelimit",
                "bound": bound if np.isfinite(bound) else None, "nodes": int(m.getNNodes())}


class _CvxpySCIP:
    """cvxpy with SCIP: the quadratic objective stays quadratic (boolean variables); no warm start."""

    requires = ("cvxpy", "pyscipopt")
    native = True
    linearization = "native"
    bound_tol = 1e-7                  # = the SCIP feasibility tolerance set below (the epigraph constraint)

    def available(self) -> bool:
        import importlib.util
        if any(importlib.util.find_spec(m) is None for m in self.requires):
            return False
        import cvxpy as cp
        return "SCIP" in cp.installed_solvers()

    def solve(self, data: RowData, cfg, objective: str, linearization: str) -> BackendResult:
        import cvxpy as cp

        x = cp.Variable(data.k, boolean=True)
        if objective == "proxy":
            expr = 1.0 + data.c_lin @ x + cp.quad_form(x, cp.psd_wrap(data.Q))
        else:
            expr = cp.sum_squares(data.a + data.A @ x)
        prob = cp.Problem(cp.Minimize(expr))
        params = {"limits/time": float(cfg.time_limit), "limits/gap": 0.0, "limits/absgap": 0.0,
                  "numerics/feastol": 1e-7}
        try:
            with warnings.catch_warnings():   # "may be inaccurate" on time limits: the status is read below
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                prob.solve(solver="SCIP", verbose=cfg.msg, scip_params=params)
        except cp.error.SolverError as e:
            return BackendResult(None, f"solver error: {e}", False, False)
        extra = prob.solver_stats.extra_stats or {}
        model = extra.get("model")
        raw = extra.get("scip_status", prob.status)
        vals = None
        if x.value is not None:
            vals = (np.asarray(x.value, dtype=float) > 0.5).astype(float)
        bound = None
        nodes = 0
        if model is not None:
            nodes = int(model.getNNodes())
            db = float(model.getDualbound())
            if np.isfinite(db) and prob.value is not None and "value" in extra:
                bound = db + (float(prob.value) - float(extra["value"]))   # add back cvxpy's constant offset
        return BackendResult(vals, str(raw), raw == "optimal", raw == "timelimit", bound, nodes)


class _Gurobi:
    """gurobipy: the quadratic objective as a native binary QP (samples: continuous residuals, a sum of squares),
    warm-started at the warm start (``x = 0``). The pip licence solves models up to 2000 variables/constraints."""

    requires = ("gurobipy",)
    native = True
    linearization = "native"
    bound_tol = 1e-7                  # Gurobi's optimality/feasibility tolerances on an O(1) objective

    def available(self) -> bool:
        import importlib.util
        return importlib.util.find_spec("gurobipy") is not None

    def solve(self, data: RowData, cfg, objective: str, linearization: str) -> BackendResult:
        import gurobipy as gp
        from gurobipy import GRB

        try:
            with gp.Env(empty=True) as env:
                env.setParam("OutputFlag", int(cfg.msg))
                env.start()
                with gp.Model("rounding", env=env) as m:
                    m.Params.TimeLimit = float(cfg.time_limit)
                    m.Params.MIPGap = 0.0
                    m.Params.MIPGapAbs = 0.0
                    m.Params.Threads = int(cfg.threads)
                    x = m.addMVar(data.k, vtype=GRB.BINARY, name="x")
                    x.Start = np.zeros(data.k)
                    if objective == "proxy":
                        m.setObjective(x @ data.Q @ x + data.c_lin @ x + 1.0, GRB.MINIMIZE)
                    else:
                        e = m.addMVar(data.a.shape[0], lb=-GRB.INFINITY, name="e")
                        m.addConstr(e - data.A @ x == data.a)
                        m.setObjective(e @ e, GRB.MINIMIZE)
                    m.optimize()
                    st = m.Status
                    vals = (np.asarray(x.X, dtype=float) > 0.5).astype(float) if m.SolCount > 0 else None
                    bound = float(m.ObjBound) if np.isfinite(m.ObjBound) else None
                    raw = {GRB.OPTIMAL: "optimal", GRB.TIME_LIMIT: "time_limit"}.get(st, f"status {st}")
                    return BackendResult(vals, raw, st == GRB.OPTIMAL, st == GRB.TIME_LIMIT, bound,
                                         int(m.NodeCount))
        except gp.GurobiError as e:
            raise RoundlabError(f"miqp backend 'gurobi' failed on a {data.k}-variable row: {e}") from None


#: Backend name → implementation (a map, not an if-chain); third parties may add entries.
BACKENDS: dict[str, object] = {
    "cbc": _CBC(),
    "highs": _HiGHS(),
    "scip": _SCIP(),
    "cvxpy-scip": _CvxpySCIP(),
    "gurobi": _Gurobi(),
}


def available_backends() -> list[str]:
    return [name for name, b in BACKENDS.items() if b.available()]


# --------------------------------------------------------------------------------------------------- solver
@dataclass(frozen=True)
class MiqpConfig(SolverConfig):
    backend: str = "cvxpy-scip"       # see BACKENDS: cbc | highs | scip (PuLP) | cvxpy-scip | gurobi (native)
    objective: str = "proxy"          # "proxy" (from M) | "samples" (from the N samples; the problem must carry X)
    linearization: str = "auto"       # "fortet" | "glover" | "auto" (the backend's faster one up to fortet_max_d)
    fortet_max_d: int = 64
    time_limit: float = 30.0          # seconds per row subproblem (model building not included)
    warm_start: str | None = "tabu"   # solver whose answer starts each row when no init is given; None: nearest
    gap_tol: float = 1e-6             # OPTIMAL needs (objective − bound) ≤ gap_tol · objective
    bound_tol: float | None = None    # subtracted from the backend's bound (scaled units, warm start = 1);
                                      # None: the backend's tolerance (1e-9 LP-based, 1e-7 cvxpy-scip)
    threads: int = 1
    msg: bool = False

    def validate(self):
        check_choice("backend", self.backend, list(BACKENDS))
        check_choice("objective", self.objective, ("proxy", "samples"))
        check_choice("linearization", self.linearization, ("fortet", "glover", "auto"))
        check_int("fortet_max_d", self.fortet_max_d, 0)
        check_float("time_limit", self.time_limit, 0.0, 1e7, lo_open=True)
        if self.warm_start is not None and (not isinstance(self.warm_start, str) or self.warm_start == "miqp"):
            raise RoundlabError(f"warm_start must be the name of another solver or None, got {self.warm_start!r}")
        check_float("gap_tol", self.gap_tol, 0.0, 1.0)
        check_float("bound_tol", self.bound_tol, 0.0, 1e-3, none=True)
        check_int("threads", self.threads, 1, 256)
        check_bool("msg", self.msg)


def row_data(problem, r: int, delta0: torch.Tensor, objective: str) -> tuple[RowData | None, np.ndarray, float]:
    """Scaled model of row ``r`` around ``delta0`` (R, d); returns (data or None if nothing to solve, free idx, f⁰)."""
    d0 = delta0[r].cpu().numpy()
    other = problem.flipped(delta0)[r].cpu().numpy()
    D = other - d0
    F = np.nonzero(D != 0)[0]
    Mr = (problem.M if problem.shared else problem.M[r]).cpu().numpy()
    f0 = float(d0 @ Mr @ d0)
    if F.size == 0 or f0 <= 0:
        return None, F, f0
    DF = D[F]
    g0 = 2 * Mr[F] @ d0
    Q = DF[:, None] * Mr[np.ix_(F, F)] * DF[None, :] / f0
    c = (DF * g0 + DF * DF * np.diag(Mr)[F]) / f0
    data = RowData(k=F.size, c=c, Q=(Q + Q.T) / 2)
    if objective == "samples":
        X = (problem.X if problem.X.dim() == 2 else problem.X[r]).cpu().numpy()
        s = np.sqrt(X.shape[0] * f0)
        data.a = X @ d0 / s
        data.A = X[:, F] * DF[None, :] / s
    return data, F, f0


@register_solver("miqp")
class MIQP(Solver):
    """Exact MIQP per row (PuLP: CBC/HiGHS/SCIP, or cvxpy+SCIP), proxy or samples objective, proven status."""

    Config = MiqpConfig
    objectives = ("proxy", "samples")
    exact = True
    monotone = True
    batched = False
    devices = ("cpu",)
    requires = ()

    def check(self, problem):
        backend = BACKENDS[self.config.backend]
        if not backend.available():
            raise RoundlabError(f"miqp backend {self.config.backend!r} is not available (needs "
                                f"{', '.join(backend.requires)}); installed backends: "
                                f"{', '.join(available_backends()) or 'none'}")
        if self.config.objective == "samples" and problem.X is None:
            raise RoundlabError("miqp objective='samples' needs a problem built from samples X "
                                "(RoundingProblem.from_grid(..., X=Xbar))")
        if self.config.warm_start is not None:
            solver_class(self.config.warm_start)

    def solve(self, problem, init):
        cfg = self.config
        R = problem.rows
        if init is not None:
            warm = init
        elif cfg.warm_start is not None:
            warm = solver_class(cfg.warm_start)()(problem).delta
        else:
            warm = problem.nearest()
        backend = BACKENDS[cfg.backend]
        delta = warm.clone()
        flipped = problem.flipped(warm)
        codes = torch.full((R,), CODE[Status.OPTIMAL], dtype=torch.long)
        bound = torch.full((R,), torch.nan, dtype=F64)
        nodes = torch.zeros(R, dtype=torch.long)
        row_time = torch.zeros(R, dtype=F64)
        fallback = torch.zeros(R, dtype=torch.bool)
        raw_counts: dict[str, int] = {}
        lins: dict[str, int] = {}
        for r in range(R):
            t0 = time.perf_counter()
            data, F, f0 = row_data(problem, r, warm, cfg.objective)
            if data is None:  # nothing free, or the warm start already has loss 0: optimal
                bound[r] = max(f0, 0.0)
                row_time[r] = time.perf_counter() - t0
                continue
            lin = cfg.linearization
            if backend.native:
                lin = "native"
            elif lin == "auto":
                lin = backend.linearization if data.k <= cfg.fortet_max_d else "glover"
            lins[lin] = lins.get(lin, 0) + 1
            res = backend.solve(data, cfg, cfg.objective, lin)
            raw_counts[res.raw] = raw_counts.get(res.raw, 0) + 1
            nodes[r] = res.nodes
            use = res.x is not None
            if use:
                cand = delta[r].clone()
                Ft = torch.as_tensor(F, device=delta.device)
                x = torch.as_tensor(res.x, device=delta.device) > 0.5
                cand[Ft] = torch.where(x, flipped[r, Ft], warm[r, Ft])
                Mr = problem.M if problem.shared else problem.M[r]
                use = float(cand @ Mr @ cand) <= f0      # never worse than the warm start
                if use:
                    delta[r] = cand
            Mr = problem.M if problem.shared else problem.M[r]
            f = float(delta[r] @ Mr @ delta[r])
            if res.bound is not None:
                tol = backend.bound_tol if cfg.bound_tol is None else cfg.bound_tol
                bound[r] = (res.bound - tol) * f0
            proved = res.finished and res.bound is not None and \
                f - float(bound[r]) <= cfg.gap_tol * f
            if proved:
                status = Status.OPTIMAL
            elif not use:
                status = Status.FALLBACK
                fallback[r] = True
            elif res.time_limited:
                status = Status.TIME_LIMIT
            else:
                status = Status.FEASIBLE
            codes[r] = CODE[status]
            row_time[r] = time.perf_counter() - t0
        info = {"backend": cfg.backend, "backend_status": raw_counts, "linearization_used": lins,
                "warm_start": "init" if init is not None else (cfg.warm_start or "nearest")}
        return Solution(delta, codes, bound=bound, iterations=nodes, row_time=row_time, fallback=fallback,
                        info=info)
