"""The process executor: tasks on local worker processes, with per-task time-outs and retries of dead workers.

A worker is a ``spawn``-ed process (safe beside torch's thread pools) that receives ``pickle((fn, payload))`` over a
pipe and sends back the pickled answer or the exception's message and traceback. A worker that runs past
``task_timeout`` is killed and replaced; one that dies is replaced and its task re-run up to ``retries`` times.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import time
import traceback
from collections import deque
from multiprocessing.connection import wait
from typing import Iterator

from roundlab.errors import RoundlabError
from roundlab.fanout.executors import Executor, Outcome, describe_exception, register_executor
from roundlab.validate import check_choice


def _worker_main(conn, threads: int) -> None:
    """A worker's loop: receive ``pickle((fn, payload))``, send back ``pickle(("ok", value) | ("error", msg, tb))``.

    Exits when the parent closes its end (or dies: ``recv`` raises EOFError). Ctrl-C is the parent's to handle
    (one line, then it closes the workers): a worker is started with SIGINT ignored (:func:`_sigint_ignored`)."""
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        conn.send_bytes(pickle.dumps(("ready",)))      # a task's clock starts only once its worker is up
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            blob = conn.recv_bytes()
        except (EOFError, OSError):
            return
        fn, payload = pickle.loads(blob)
        try:
            out = pickle.dumps(("ok", fn(payload)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:               # noqa: BLE001  sent back to the parent
            out = pickle.dumps(("error", describe_exception(e), traceback.format_exc()))
        try:
            conn.send_bytes(out)
        except (BrokenPipeError, OSError):
            return


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT while a worker is spawned, so a Ctrl-C during its start-up cannot print its traceback."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


#: The thread-count variables the native libraries read when they load (OpenBLAS under numpy and scipy, OpenMP, MKL).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _threads_env(threads: int):
    """The environment a spawned worker starts with: its native libraries get ``threads`` threads too, not one per
    core (two workers on two cores each running a 2-thread OpenBLAS made a 128×128 ``numpy.linalg.solve`` 50 ms;
    and a float reduction's last bits depend on the thread count). Restores the caller's values."""
    old = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: str(threads) for name in THREAD_ENV})
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Worker:
    """One worker process, the parent's end of its pipe, and the task it holds (index, pickled call) if any."""

    def __init__(self, ctx, threads: int):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, threads), daemon=True)
        with _sigint_ignored(), _threads_env(threads):   # the child starts with SIGINT ignored (kept through exec
            self.process.start()                         # and its imports) and its libraries' thread counts
        child.close()
        self.task: tuple[int, bytes] | None = None
        self.started = 0.0
        self.ready = False

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


@register_executor("process")
class ProcessExecutor(Executor):
    """Local worker processes (``spawn`` by default: safe beside torch's thread pools), each with one torch thread.

    Workers are started once and reused for every :meth:`run` call until :meth:`close`. At most ``workers`` tasks
    are in flight, so a task's clock starts when a worker takes it.
    """

    def __init__(self, workers: int = 1, task_timeout: float | None = None, retries: int = 2,
                 start_method: str = "spawn", threads: int = 1):
        super().__init__(workers, task_timeout, retries)
        check_choice("start_method", start_method, mp.get_all_start_methods())
        self.ctx = mp.get_context(start_method)
        self.threads = threads
        self._pool: list[_Worker] = []
        self._startup_failures = 0

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and monitoring)."""
        return [w.process.pid for w in self._pool if w.process.is_alive()]

    def start(self, timeout: float = 120.0) -> "ProcessExecutor":
        """Start the workers now and wait until every one is ready (otherwise the first :meth:`run` does it)."""
        self._ensure()
        deadline = time.perf_counter() + timeout
        while not all(w.ready for w in self._pool):
            if time.perf_counter() > deadline:
                raise RoundlabError(f"{self.name} executor: workers not ready after {timeout:g} s")
            starting = [w for w in self._pool if not w.ready]
            ready = set(wait([w.conn for w in starting] + [w.process.sentinel for w in starting], timeout=1.0))
            for w in starting:
                self._starting(w, ready)
            self._ensure()
        return self

    def _ensure(self) -> None:
        self._pool = [w for w in self._pool if w.process.is_alive()]
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self.ctx, self.threads))

    def run(self, fn, payloads):
        pending = deque((i, pickle.dumps((fn, p), protocol=pickle.HIGHEST_PROTOCOL)) for i, p in enumerate(payloads))
        attempts: dict[int, int] = {}
        self._ensure()
        try:
            while pending or any(w.task is not None for w in self._pool):
                for w in self._pool:                                     # hand out work
                    if w.ready and w.task is None and pending:
                        w.task = pending.popleft()
                        w.started = time.perf_counter()
                        attempts[w.task[0]] = attempts.get(w.task[0], 0) + 1
                        w.conn.send_bytes(w.task[1])
                busy = [w for w in self._pool if w.task is not None]
                watched = [w for w in self._pool if w.task is not None or not w.ready]
                waits = [w.conn for w in watched] + [w.process.sentinel for w in watched]
                timeout = None
                if self.task_timeout is not None and busy:
                    timeout = max(0.0, min(w.started + self.task_timeout for w in busy) - time.perf_counter())
                ready = set(wait(waits, timeout=timeout))
                for w in watched:
                    if not w.ready:
                        self._starting(w, ready)
                for w in busy:
                    yield from self._collect(w, ready, pending, attempts)
                self._ensure()
        finally:
            for w in self._pool:             # a consumer that stops early leaves no half-done worker behind
                if w.task is not None:
                    w.kill()
            self._pool = [w for w in self._pool if w.task is None]

    def _starting(self, w: _Worker, ready: set) -> None:
        """A starting worker said it is ready, or died on the way (three such deaths in a row: give up)."""
        if w.conn in ready:
            try:
                w.ready = pickle.loads(w.conn.recv_bytes()) == ("ready",)
                self._startup_failures = 0
                return
            except (EOFError, OSError):
                pass
        if w.process.sentinel in ready or not w.process.is_alive():
            w.kill()
            self._startup_failures += 1
            if self._startup_failures >= 3:
                raise RoundlabError(f"{self.name} executor: worker processes die while starting (exit code "
                                    f"{w.process.exitcode}); run with --executor serial to see the error")

    def _collect(self, w: _Worker, ready: set, pending: deque, attempts: dict) -> Iterator[Outcome]:
        index, blob = w.task
        elapsed = time.perf_counter() - w.started
        n = attempts[index]
        if w.conn in ready:
            try:
                msg = pickle.loads(w.conn.recv_bytes())
            except (EOFError, OSError):
                msg = None                   # died while answering: handled as a death below
            if msg is not None:
                w.task = None
                if msg[0] == "ok":
                    yield Outcome(index, "ok", value=msg[1], attempts=n, seconds=elapsed)
                else:
                    yield Outcome(index, "error", message=msg[1], traceback=msg[2], attempts=n, seconds=elapsed)
                return
        if w.conn in ready or w.process.sentinel in ready or not w.process.is_alive():
            w.process.join(timeout=1)
            code = w.process.exitcode
            w.kill()
            w.task = None
            if n <= self.retries:
                pending.appendleft((index, blob))
            else:
                why = f"signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
                yield Outcome(index, "died", message=f"worker died ({why}) on {n} attempt(s)",
                              attempts=n, seconds=elapsed)
            return
        if self.task_timeout is not None and elapsed >= self.task_timeout:
            w.kill()
            w.task = None
            yield Outcome(index, "timeout", message=f"no answer after {self.task_timeout:g} s; worker killed",
                          attempts=n, seconds=elapsed)

    def close(self) -> None:
        for w in self._pool:
            try:
                w.conn.close()               # the worker's recv raises EOFError and it exits
            except OSError:
                pass
        for w in self._pool:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
        self._pool = []

    def describe(self) -> dict:
        return {**super().describe(), "start_method": self.ctx.get_start_method(), "threads": self.threads,
                "pid": os.getpid()}
