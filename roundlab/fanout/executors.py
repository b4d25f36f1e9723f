"""Executors: run independent tasks and report each one as it completes, whatever happens to it.

An executor maps a picklable top-level function over payloads and yields an :class:`Outcome` per payload, in
completion order (callers reassemble by ``index``, so the answers never depend on which executor ran them):

* ``"ok"``: the function returned ``value``;
* ``"error"``: the function raised (``message`` is ``"ExcType: text"``, ``traceback`` the worker's traceback);
* ``"timeout"``: it ran longer than ``task_timeout`` seconds; its worker was killed and replaced;
* ``"died"``: its worker process died (SIGKILL, OOM killer, segfault) on ``retries + 1`` attempts in a row; every
  death short of that is retried on a fresh worker.

Built in (``list_executors()``): ``serial`` (in this process, this module; no timeouts), ``process`` (local worker
processes, :mod:`roundlab.fanout.process_executor`) and ``ray`` (:mod:`roundlab.fanout.ray_executor`, a Ray cluster
or a local ``ray.init()``). Register another with :func:`register_executor`.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from roundlab.errors import RoundlabError
from roundlab.registry import Registry
from roundlab.validate import check_float

KINDS = ("ok", "error", "timeout", "died")


@dataclass
class Outcome:
    """What became of payload ``index``: ``kind`` in :data:`KINDS`, ``value`` when ok, else ``message``."""

    index: int
    kind: str
    value: Any = None
    message: str = ""
    traceback: str = ""
    attempts: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def describe_exception(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def check_options(workers, task_timeout, retries) -> None:
    """The executors' shared options, one clear error each.

    ``workers`` and ``retries`` keep their own wording ("a positive integer", "an integer >= 0"): the CLI's users
    and tests match it."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise RoundlabError(f"workers must be a positive integer, got {workers!r}")
    check_float("task_timeout", task_timeout, 0, lo_open=True, none=True)     # seconds; finite
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise RoundlabError(f"retries must be an integer >= 0, got {retries!r}")


class Executor(ABC):
    """Runs ``fn(payload)`` for many payloads; subclasses set ``name`` and implement :meth:`run`.

    Use as a context manager (or call :meth:`close`) so worker processes are stopped.
    """

    name = ""
    supports_timeout = True

    def __init__(self, workers: int = 1, task_timeout: float | None = None, retries: int = 2):
        check_options(workers, task_timeout, retries)
        if task_timeout is not None and not self.supports_timeout:
            raise RoundlabError(f"the {self.name} executor cannot stop a running task, so task_timeout needs the "
                                f"process or ray executor")
        self.workers, self.task_timeout, self.retries = workers, task_timeout, retries

    @abstractmethod
    def run(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[Outcome]:
        """Yield one :class:`Outcome` per payload, as each completes."""

    def close(self) -> None:
        """Stop any workers (idempotent)."""

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "task_timeout": self.task_timeout,
                "retries": self.retries}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


#: Every registered executor class by name, in registration order (serial, process, ray, then any plugin).
EXECUTORS: Registry[type[Executor]] = Registry("executor")


def register_executor(name: str, *, override: bool = False):
    """Class decorator: register an :class:`Executor` subclass under ``name``."""

    def decorate(cls):
        EXECUTORS.register(name, cls, override=override)
        cls.name = name
        return cls

    return decorate


def list_executors() -> list[str]:
    """Registered executor names, in registration order (serial, process, ray, then any plugin)."""
    return EXECUTORS.names()


def get_executor(name: str, **options) -> Executor:
    return EXECUTORS.get(name)(**options)


@register_executor("serial")
class SerialExecutor(Executor):
    """In this process, one payload after another (the default; no timeouts, nothing to kill)."""

    supports_timeout = False

    def run(self, fn, payloads):
        for i, p in enumerate(payloads):
            t0 = time.perf_counter()
            try:
                value = fn(p)
            except Exception as e:            # noqa: BLE001  reported to the caller, who decides
                yield Outcome(i, "error", message=describe_exception(e), traceback=traceback.format_exc(),
                              seconds=time.perf_counter() - t0)
                continue
            yield Outcome(i, "ok", value=value, seconds=time.perf_counter() - t0)


from roundlab.fanout import process_executor  # noqa: E402,F401  registers "process" after "serial"
