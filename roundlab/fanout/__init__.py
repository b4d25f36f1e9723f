"""Fan-out of rounding subproblems over executors, with a durable results store (issue: reliability/scale-out).

    from roundlab.fanout import FannedSolver, FanoutConfig, ResultStore, get_executor
    with get_executor("process", workers=2) as ex:
        solver = FannedSolver(get_solver("miqp", backend="highs"), ex, ResultStore("answers.sqlite"), chunk_rows=32)
        res = solver(problem)

The pipeline builds this from ``ERQConfig`` (``executor``, ``workers``, ``chunk_rows``, ``task_timeout``,
``retries``, ``on_solver_error``); see :mod:`roundlab.fanout.fanned` for the fault policy.
"""

from roundlab.fanout.executors import Executor, Outcome, get_executor, list_executors, register_executor
from roundlab.fanout import ray_executor  # noqa: F401,E402  registers "ray" (imports Ray only when one is built)
from roundlab.fanout.fanned import FannedSolver, FanoutConfig, task_key
from roundlab.fanout.store import Answer, ResultStore

__all__ = ["Answer", "Executor", "FannedSolver", "FanoutConfig", "Outcome", "ResultStore", "get_executor",
           "list_executors", "register_executor", "task_key"]
