"""Writing files so that a reader (or a resumed run) never sees half of one: the one atomic-write helper.

:func:`atomic_file` yields a temporary path beside the target; when the block succeeds the temporary file replaces
the target in one rename, otherwise it is removed. An ``OSError`` (disk full, read-only, permissions) becomes one
:class:`~roundlab.errors.RoundlabError` line naming what could not be written.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from roundlab.errors import RoundlabError


@contextmanager
def atomic_file(path: str | Path, what: str | None = None) -> Iterator[Path]:
    """Write to the yielded temporary path; it becomes ``path`` when the block ends without an error."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RoundlabError(f"cannot write {what or path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """``data`` (text as UTF-8) into ``path``, atomically."""
    with atomic_file(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
