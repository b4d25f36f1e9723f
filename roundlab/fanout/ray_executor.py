"""The Ray executor: the same tasks on a Ray cluster (or a local ``ray.init()`` when none is running).

Set ``RAY_ADDRESS`` (e.g. ``auto`` on a cluster node, or ``ray://head:10001``) to join a cluster; without it Ray
starts a local instance with ``workers`` CPUs. A worker death is retried by Ray itself (``max_retries``) and
reported as ``"died"`` once those are spent; a task past ``task_timeout`` is force-cancelled (its worker killed).
At most ``workers`` tasks are in flight, so a task's clock starts when it is submitted to a free slot; the workers are
started (and import roundlab) when the executor is built, so that start-up is not charged to the first tasks. A
retried task's worker starts afresh, so keep ``task_timeout`` well above a worker's start-up time.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections import deque

from roundlab.errors import RoundlabError
from roundlab.fanout.executors import Executor, Outcome, register_executor


def _call(blob: bytes) -> bytes:
    """Runs on a Ray worker: unpickle ``(fn, payload)``, call it with one torch thread, pickle the answer."""
    import torch

    torch.set_num_threads(1)
    fn, payload = pickle.loads(blob)
    return pickle.dumps(fn(payload), protocol=pickle.HIGHEST_PROTOCOL)


def _warm_up(_) -> None:
    import roundlab.solvers  # noqa: F401


@register_executor("ray")
class RayExecutor(Executor):
    """Tasks as Ray remote functions; payloads travel pickled, so results are byte-for-byte the other executors'."""

    def __init__(self, workers: int = 1, task_timeout: float | None = None, retries: int = 2):
        super().__init__(workers, task_timeout, retries)
        try:
            import ray
        except ImportError:
            raise RoundlabError("the ray executor needs Ray: pip install 'ray>=2.9' (or roundlab[cluster])") from None
        self.ray = ray
        self._started_here = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if not os.environ.get("RAY_ADDRESS"):
                kwargs["num_cpus"] = workers
                # a local instance's workers are our children: give them this process's import path, so solvers
                # and task functions defined beside the caller's script unpickle there too
                paths = [p for p in sys.path if p] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
                os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
            ray.init(**kwargs)
            self._started_here = True
        self._remote = ray.remote(num_cpus=1, max_retries=retries)(_call)
        # start the workers now (each imports torch and roundlab once), so task clocks do not include start-up
        ray.get([self._remote.remote(pickle.dumps((_warm_up, None))) for _ in range(workers)])

    def run(self, fn, payloads):
        ray = self.ray
        pending = deque((i, pickle.dumps((fn, p), protocol=pickle.HIGHEST_PROTOCOL)) for i, p in enumerate(payloads))
        inflight: dict = {}                                  # ref -> (index, start time)
        try:
            while pending or inflight:
                while pending and len(inflight) < self.workers:
                    i, blob = pending.popleft()
                    inflight[self._remote.remote(blob)] = (i, time.perf_counter())
                timeout = None
                if self.task_timeout is not None:
                    first = min(t for _, t in inflight.values())
                    timeout = max(0.0, first + self.task_timeout - time.perf_counter())
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=timeout)
                for ref in done:
                    i, t0 = inflight.pop(ref)
                    yield self._outcome(ref, i, time.perf_counter() - t0)
                if self.task_timeout is not None:
                    now = time.perf_counter()
                    for ref, (i, t0) in list(inflight.items()):
                        if now - t0 >= self.task_timeout:
                            ray.cancel(ref, force=True)
                            inflight.pop(ref)
                            yield Outcome(i, "timeout", message=f"no answer after {self.task_timeout:g} s; "
                                                                f"task force-cancelled", seconds=now - t0)
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)

    def _outcome(self, ref, i: int, seconds: float) -> Outcome:
        ray = self.ray
        try:
            return Outcome(i, "ok", value=pickle.loads(ray.get(ref)), seconds=seconds)
        except ray.exceptions.RayTaskError as e:           # the function raised on the worker
            cause = getattr(e, "cause", None)
            msg = f"{type(cause).__name__}: {cause}" if cause is not None else str(e).splitlines()[0]
            return Outcome(i, "error", message=msg.splitlines()[0], traceback=str(e), seconds=seconds)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayError) as e:
            return Outcome(i, "died", message=f"worker died on {self.retries + 1} attempt(s) "
                                              f"({type(e).__name__})", attempts=self.retries + 1, seconds=seconds)

    def close(self) -> None:
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()
            self._started_here = False

    def describe(self) -> dict:
        return {**super().describe(), "ray_address": os.environ.get("RAY_ADDRESS") or "local",
                "ray_version": self.ray.__version__}
