"""MIQP backends (:data:`BACKENDS`): ``cbc``, ``highs``, ``scip`` through PuLP (``PULP_CBC_CMD``, ``HiGHS`` via
highspy, ``SCIP_PY`` via pyscipopt), ``cvxpy-scip``, a native MIQP (convex quadratic objective with boolean
variables; ignores ``linearization``), and ``gurobi`` (gurobipy, optional: a native binary QP, warm-started; the pip
licence's 2000-variable limit covers every row here, a larger model is one clear error). All run with relative and
absolute gap 0, a per-row ``time_limit``, ``threads``, and the warm start passed where the backend takes one (CBC and
SCIP through PuLP's ``warmStart``; HiGHS via ``setSolution``; cvxpy's SCIP interface has none).

Truth, not labels: PuLP 3.x says "Optimal" for time-limited CBC/HiGHS runs, so each backend reports whether it
finished, whether the time limit stopped it, and its own bound (HiGHS ``mip_dual_bound``, SCIP ``getDualbound``,
CBC's log: "Optimal solution found" with gaps 0, or the "Lower bound" it prints when stopped).
"""

from roundlab.solvers.miqp.backends.base import BACKENDS, Backend, BackendResult, available_backends

# Built-in backends register themselves on import, in this order (no optional package is imported at load time).
from roundlab.solvers.miqp.backends import pulp_backends, cvxpy_scip, gurobi  # noqa: E402,F401  isort: skip

__all__ = ["BACKENDS", "Backend", "BackendResult", "available_backends"]
