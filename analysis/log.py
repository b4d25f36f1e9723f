"""Progress lines of the analysis scripts, time-stamped, on stderr."""

from __future__ import annotations

import sys
import time


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)
