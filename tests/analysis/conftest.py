import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:          # `analysis` is a top-level folder of the repository, not part of the package
    sys.path.insert(0, ROOT)
