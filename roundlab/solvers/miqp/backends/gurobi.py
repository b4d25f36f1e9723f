"""The ``gurobi`` backend (gurobipy, optional): a native binary QP, warm-started."""

from __future__ import annotations

import numpy as np

from roundlab.errors import RoundlabError
from roundlab.solvers.miqp.backends.base import BACKENDS, Backend, BackendResult
from roundlab.solvers.miqp.formulations import RowData


class Gurobi(Backend):
    """gurobipy: the quadratic objective as a native binary QP (samples: continuous residuals, a sum of squares),
    warm-started at the warm start (``x = 0``). The pip licence solves models up to 2000 variables/constraints."""

    requires = ("gurobipy",)
    bound_tol = 1e-7                  # Gurobi's optimality/feasibility tolerances on an O(1) objective

    def solve(self, data: RowData, cfg, objective: str, linearization: str) -> BackendResult:
        import gurobipy as gp

        try:
            with gp.Env(empty=True) as env:
                env.setParam("OutputFlag", int(cfg.msg))
                env.start()
                with gp.Model("rounding", env=env) as m:
                    return _solve(m, data, cfg, objective)
        except gp.GurobiError as e:
            raise RoundlabError(f"miqp backend 'gurobi' failed on a {data.k}-variable row: {e}") from None


def _solve(m, data: RowData, cfg, objective: str) -> BackendResult:
    from gurobipy import GRB

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
    return BackendResult(vals, raw, st == GRB.OPTIMAL, st == GRB.TIME_LIMIT, bound, int(m.NodeCount))


BACKENDS.register("gurobi", Gurobi())
