"""Model cards: what each committed zoo checkpoint is, how it was trained, and its measured FP accuracy.

A card is ``roundlab/zoo/checkpoints/<name>.json`` beside ``<name>.safetensors``. ``fp_test`` is measured on the
10,000-image Fashion-MNIST test set from the committed file, on CPU (``python -m roundlab.zoo.train --remeasure``);
``fp_test_train_device`` is the same measurement on the machine that trained it (a GPU may differ by a prediction or
two). ``fp_check`` is the same measurement on a fixed 1,000-image subset, for a fast test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from roundlab.errors import RoundlabError
from roundlab.files import atomic_write

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


@dataclass
class ModelCard:
    name: str
    family: str
    timm_class: str
    description: str
    architecture: dict
    dataset: str
    data_config: dict
    params: int
    recipe: dict
    seed: int
    training: dict = field(default_factory=dict)       # device, hardware, wall_time_s, epochs, steps, val_top1, ...
    versions: dict = field(default_factory=dict)       # roundlab/torch/timm/python that trained it
    fp_test: dict = field(default_factory=dict)        # top1, top5, n, correct_top1/5, device, versions, measured_at
    fp_test_train_device: dict = field(default_factory=dict)
    fp_check: dict = field(default_factory=dict)       # the same on test.subset(n, seed), for a fast test
    checkpoint: dict = field(default_factory=dict)     # file, bytes, sha256
    notes: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        atomic_write(path, self.to_json())

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise RoundlabError(f"model card not found: {path}") from None
        except (OSError, ValueError) as e:
            raise RoundlabError(f"cannot read model card {path}: {e}") from None
        if not isinstance(raw, dict):
            raise RoundlabError(f"model card {path} is not a JSON object")
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in raw]
        if missing:
            raise RoundlabError(f"model card {path} lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def load(cls, name: str, directory: str | Path | None = None) -> "ModelCard":
        return cls.from_json(Path(directory or CHECKPOINT_DIR) / f"{name}.json")

    def summary(self) -> str:
        t = self.fp_test
        top1 = f"{100 * t['top1']:.2f}" if "top1" in t else "?"
        top5 = f"{100 * t['top5']:.2f}" if t.get("top5") is not None else "?"
        return f"{self.name:12s} {self.timm_class:27s} {self.params:8d} params  FP test top-1 {top1}  top-5 {top5}"


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
