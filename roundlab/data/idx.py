"""IDX files (the MNIST / Fashion-MNIST format): read, write, and read once per process.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions), one big-endian uint32
per dimension, then the values, big-endian. Files ending in ``.gz`` are gzipped.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from roundlab.errors import RoundlabError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain) into a numpy array; a malformed file raises RoundlabError naming it."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise RoundlabError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as e:
        raise RoundlabError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise RoundlabError(f"not an IDX file (bad magic number {data[:4].hex() or 'empty'}): {path}")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise RoundlabError(f"truncated IDX header ({len(data)} bytes, {ndim} dimensions): {path}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise RoundlabError(f"IDX file {path} has {len(data)} bytes, its header {shape} implies {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in .gz); for tests and tiny fixtures."""
    codes = {np.dtype(v).newbyteorder(">").str if np.dtype(v).itemsize > 1 else np.dtype(v).str: k
             for k, v in _IDX_DTYPES.items()}
    a = np.asarray(array)
    dt = a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype
    code = codes.get(dt.str)
    if code is None:
        raise RoundlabError(f"IDX cannot store dtype {a.dtype}")
    payload = bytes([0, 0, code, a.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape) \
        + a.astype(dt).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


_IDX_CACHE: dict = {}


def read_idx_cached(path: Path) -> np.ndarray:
    """read_idx, remembered per (path, size, mtime) for the process (Fashion-MNIST's train split takes ~1 s to
    inflate)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _IDX_CACHE:
        if len(_IDX_CACHE) >= 8:
            _IDX_CACHE.clear()
        arr = read_idx(path)
        arr.setflags(write=False)
        _IDX_CACHE[key] = arr
    return _IDX_CACHE[key]
