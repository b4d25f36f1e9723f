"""The PuLP backends ``cbc``, ``highs`` and ``scip``: the linear models of :mod:`..formulations`, each solver's
status and bound read from the solver itself (PuLP's status label is not trusted)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings

import numpy as np

from roundlab.solvers.miqp.backends.base import BACKENDS, Backend, BackendResult
from roundlab.solvers.miqp.formulations import RowData, pulp_model


def _flips(x) -> np.ndarray | None:
    vals = [v.varValue for v in x]
    if any(v is None for v in vals):
        return None
    return (np.asarray(vals, dtype=float) > 0.5).astype(float)


class PulpBackend(Backend):
    """Builds the PuLP model; a subclass's ``_run(lp, cfg)`` solves it and returns its status words, whether it
    finished / hit the time limit, its bound on the model's objective (or ``"incumbent"``) and node count."""

    requires: tuple[str, ...] = ("pulp",)
    native = False
    linearization = "glover"          # what "auto" uses up to fortet_max_d (measured, see formulations)
    bound_tol = 1e-9                  # LP tolerances on an O(1) objective
    pulp_name = ""

    def available(self) -> bool:
        if not super().available():
            return False
        import pulp
        return self.pulp_name in pulp.listSolvers(onlyAvailable=True)

    def solve(self, data: RowData, cfg, objective: str, linearization: str) -> BackendResult:
        import pulp

        lp, x, offset = pulp_model(data, objective, linearization)
        out = self._run(lp, cfg)
        vals = _flips(x) if lp.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) else None
        if out["bound"] == "incumbent":   # the backend proved its incumbent optimal: that value is the bound
            bound = data.value(vals, objective) if vals is not None else None
        else:
            bound = None if out["bound"] is None else out["bound"] + offset
        return BackendResult(vals, out["raw"], out["finished"], out["time_limited"], bound, out["nodes"])

    def _run(self, lp, cfg) -> dict:
        raise NotImplementedError


class CBC(PulpBackend):
    pulp_name = "PULP_CBC_CMD"

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
        return read_cbc_log(text, pulp.LpStatus[lp.status], lp.sol_status == pulp.LpSolutionOptimal)


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def read_cbc_log(text: str, label: str, optimal_solution: bool) -> dict:
    """CBC's result line, bound and node count from its log (``label``: PuLP's status, used without a log).

    Finished only if CBC says "Optimal solution found" (with gaps 0) and PuLP read an optimal solution; then the
    bound is the incumbent itself. Stopped early, the bound is the printed "Lower bound" less half a unit of its
    last printed digit (CBC prints few digits)."""
    m = re.search(r"Result - (.*)", text)
    raw = m.group(1).strip() if m else label
    finished = raw.startswith("Optimal solution found") and optimal_solution
    bound = None
    if finished:
        bound = "incumbent"    # CBC prints no separate bound once it has proved optimality (gaps 0)
    else:
        mb = re.search(r"Lower bound:\s*" + _NUM, text)
        if mb:
            s = mb.group(1).lower()
            mant = s.split("e")[0]
            exp = int(s.split("e")[1]) if "e" in s else 0
            dec = len(mant.split(".")[1]) if "." in mant else 0
            bound = float(s) - 0.5 * 10.0 ** (exp - dec)
    mn = re.search(r"Enumerated nodes:\s*(\d+)", text)
    return {"raw": raw, "finished": finished, "time_limited": "time" in raw.lower(), "bound": bound,
            "nodes": int(mn.group(1)) if mn else 0}


class HiGHS(PulpBackend):
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
        bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
        return {"raw": h.modelStatusToString(st), "finished": st == highspy.HighsModelStatus.kOptimal,
                "time_limited": st == highspy.HighsModelStatus.kTimeLimit, "bound": bound,
                "nodes": int(info.mip_node_count)}


class SCIP(PulpBackend):
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


BACKENDS.register("cbc", CBC())
BACKENDS.register("highs", HiGHS())
BACKENDS.register("scip", SCIP())
