"""``miqp``: exact rounding by mixed-integer programming, row by row, with the status each backend can prove.

Each row is a binary program in the flips from the warm start (``init``, else the answer of the ``warm_start``
solver — default ``tabu``, the best heuristic measured — else nearest), scaled so the warm start scores 1:

* :mod:`.formulations` — the row data and the proxy / samples objectives, and their exact Fortet / Glover
  linearisations as PuLP models;
* :mod:`.backends` — :data:`BACKENDS`, a :class:`~roundlab.registry.Registry` of ``cbc``, ``highs``, ``scip``
  (PuLP), ``cvxpy-scip`` and ``gurobi`` (native quadratic), each reporting its own status and bound;
* :mod:`.solver` — :class:`MiqpConfig` and the :class:`MIQP` solver (registered as ``"miqp"``): statuses from the
  backends' proofs, never worse than the warm start.

Default backend ``cvxpy-scip``: the only one that proved ViT-like rows of d = 48 and d = 64 within 60 s on 2 cores,
where every PuLP linearisation timed out; at d ≤ 32 the PuLP backends are faster.
"""

from roundlab.solvers.miqp.backends import BACKENDS, Backend, BackendResult, available_backends
from roundlab.solvers.miqp.formulations import RowData, pulp_model, row_data
from roundlab.solvers.miqp.solver import MIQP, MiqpConfig

__all__ = ["BACKENDS", "Backend", "BackendResult", "MIQP", "MiqpConfig", "RowData", "available_backends",
           "pulp_model", "row_data"]
