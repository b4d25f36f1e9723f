"""The ``cvxpy-scip`` backend: cvxpy with SCIP, the quadratic objective kept quadratic (boolean variables)."""

from __future__ import annotations

import warnings

import numpy as np

from roundlab.solvers.miqp.backends.base import BACKENDS, Backend, BackendResult
from roundlab.solvers.miqp.formulations import RowData


class CvxpySCIP(Backend):
    """cvxpy with SCIP: the quadratic objective stays quadratic (boolean variables); no warm start."""

    requires = ("cvxpy", "pyscipopt")
    bound_tol = 1e-7                  # = the SCIP feasibility tolerance set below (the epigraph constraint)

    def available(self) -> bool:
        if not super().available():
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


BACKENDS.register("cvxpy-scip", CvxpySCIP())
