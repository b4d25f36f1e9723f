"""The ERQ run configuration: one frozen, validated dataclass, serialised into every result.

Method presets (``METHODS``) name the rows of the paper's tables; a preset only fills switches, so every run is
described completely by its :class:`ERQConfig`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from roundlab.errors import RoundlabError
from roundlab.pipeline.lam import CONVENTIONS, HEAD_LAMS
from roundlab.pipeline.wqer import PARTITIONS
from roundlab.quant.grid import check_bits
from roundlab.registry import Registry
from roundlab.validate import check_known

DATA_FLOWS = ("independent", "sequential")
ROUNDING_LAYERS = ("all", "qkv_fc1")
RECORDS = ("basic", "full")

#: Named rows of the results tables. Each maps to switches of :class:`ERQConfig`.
METHODS: Registry[dict[str, Any]] = Registry("method")
# min/max quantizers, layer-wise activations, no reparameterisation, single-grid weights, round to nearest
METHODS.register("rtn", {"calibration": "minmax", "reparam": False, "dual_uniform": False, "aqer": False,
                         "wqer": False})
METHODS.register("calib", {"aqer": False, "wqer": False})    # RepQ-ViT calibration + reparam (the paper's "baseline")
METHODS.register("aqer", {"aqer": True, "wqer": False})      # + Aqer, weights rounded to nearest
METHODS.register("wqer", {"aqer": False, "wqer": True})      # + Wqer only
METHODS.register("erq", {"aqer": True, "wqer": True})        # full ERQ


@dataclass(frozen=True)
class ERQConfig:
    """Everything that determines an ERQ run. Defaults follow the authors' release (ERQ_SPEC §12)."""

    model: str = "fmnist-vit"
    checkpoint: str | None = None           # a local weights file for a real timm model name
    dataset: str | None = None              # None: the model's own dataset (Fashion-MNIST for the zoo)
    data_root: str | None = None
    wbits: int = 4
    abits: int = 4
    method: str = "erq"
    calibration: str = "percentile"         # "percentile" (RepQ-ViT/ERQ MSE search + reparam) | "minmax"
    aqer: bool = True
    wqer: bool = True
    solver: str = "rr"
    solver_options: dict = field(default_factory=dict)
    rounding: bool = True                   # Wqer's rounding step uses `solver` (False: nearest)
    ridge: bool = True                      # Wqer's ridge step on the remaining columns
    rounding_layers: str = "all"            # "all" (release) | "qkv_fc1" (the commented condition)
    lam: float = 1e4                        # λ in `lam_convention` (release: its `coe`)
    lam_convention: str = "release"
    head_lam: str = "shared"                # Aqer λ of the classifier head: "shared" | "release" (0.1, see lam.py)
    partition: str = "natural"              # Wqer partition order: "natural" (release) | "error" (per row)
    data_flow: str = "independent"          # "independent" (release) | "sequential" (GPTQ-like)
    dual_uniform: bool = True               # TPAMI dual-uniform weights for qkv/fc1
    reparam: bool = True                    # RepQ-ViT reparameterisation of post-LN quantizers
    quant_options: dict = field(default_factory=dict)   # any other roundlab.quant.QuantConfig field
    calib_images: int = 32
    calib_batch_size: int | None = None     # images per activation-calibration forward (None: all at once, released)
    heldout_images: int = 32                # for held-out Eq. 4 errors in the per-layer records
    eval_images: int | None = None          # None: the whole test split
    seed: int = 0
    records: str = "basic"                  # "full" also runs Wqer's rounding-only / ridge-only variants
    device: str = "auto"                     # "auto": cuda when a CUDA device is present, else cpu; or cpu | cuda[:N]
    batch_size: int = 256
    # how Wqer's rounding subproblems run (roundlab.fanout); answers are recorded in <run dir>/subproblems.sqlite
    executor: str = "serial"                # "serial" | "process" (local workers) | "ray" (RAY_ADDRESS or local)
    workers: int = 1
    chunk_rows: int | None = None           # rows per task (None: one task per Wqer segment)
    task_timeout: float | None = None       # seconds per task (process/ray); past it: round-to-nearest, recorded
    retries: int = 2                        # re-runs of a task whose worker died, then round-to-nearest, recorded
    on_solver_error: str = "raise"          # a solver exception: "raise" (one error; rerun resumes) | "fallback"

    def __post_init__(self):
        check_bits(self.wbits, "wbits")
        check_bits(self.abits, "abits")
        check_known("method", self.method, METHODS)
        check_known("calibration", self.calibration, ("percentile", "minmax"))
        check_known("rounding_layers", self.rounding_layers, ROUNDING_LAYERS)
        check_known("lam_convention", self.lam_convention, CONVENTIONS)
        check_known("head_lam", self.head_lam, HEAD_LAMS)
        check_known("partition", self.partition, PARTITIONS)
        check_known("data_flow", self.data_flow, DATA_FLOWS)
        check_known("records", self.records, RECORDS)
        if not (isinstance(self.lam, (int, float)) and not isinstance(self.lam, bool) and math.isfinite(self.lam)
                and self.lam >= 0):
            raise RoundlabError(f"lam must be a number >= 0 and finite, got {self.lam!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2 ** 63:
            raise RoundlabError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if not isinstance(self.quant_options, dict) or not isinstance(self.solver_options, dict):
            raise RoundlabError("quant_options and solver_options must be dicts of option: value")
        shadowed = sorted(set(self.quant_options) & {f.name for f in fields(self)})
        if shadowed:    # the run's name, table and digest would show the field, the model the override
            raise RoundlabError(f"quant option(s) {shadowed} are fields of the run itself; set them with "
                                f"{', '.join('--' + k.replace('_', '-') for k in shadowed)}, not --quant-opt")
        object.__setattr__(self, "device", resolve_device(self.device))     # the run records the device it used
        self.quant_config()                                  # a bad quant option: one clear error, now
        for name in ("calib_images", "heldout_images", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "heldout_images" else 1):
                raise RoundlabError(f"{name} must be a positive integer, got {v!r}")
        for name in ("eval_images", "calib_batch_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise RoundlabError(f"{name} must be a positive integer or None, got {v!r}")
        from roundlab.solvers import get_solver
        get_solver(self.solver, **self.solver_options)     # unknown solver or option: one clear error, now
        self.fanout_config()

    @classmethod
    def for_method(cls, method: str = "erq", **overrides) -> "ERQConfig":
        """A config for a named method (``METHODS``), with explicit ``overrides`` taking precedence."""
        check_known("method", method, METHODS)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise RoundlabError(f"unknown ERQConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**{**METHODS[method], **overrides, "method": method})

    def quant_config(self):
        """The :class:`roundlab.quant.QuantConfig` of this run (``quant_options`` override the derived fields)."""
        from roundlab.quant import QuantConfig

        q = {"wbits": self.wbits, "abits": self.abits, "dual_uniform": self.dual_uniform,
             "reparam": self.reparam and self.calibration == "percentile"}
        if self.calibration == "minmax":
            q.update(weight_percentiles=(1.0,), act_percentiles=(1.0,), softmax_percentiles=(1.0,),
                     channelwise_post_ln=False, reparam=False)
        known = {f.name for f in fields(QuantConfig)}
        unknown = sorted(set(self.quant_options) - known)
        if unknown:
            raise RoundlabError(f"unknown quant option(s) {unknown}; known: {sorted(known)}")
        return QuantConfig(**{**q, **self.quant_options})

    def fanout_config(self):
        """The :class:`roundlab.fanout.FanoutConfig` of this run (validates the execution fields)."""
        from roundlab.fanout.fanned import FanoutConfig

        return FanoutConfig(executor=self.executor, workers=self.workers, chunk_rows=self.chunk_rows,
                            task_timeout=self.task_timeout, retries=self.retries, on_error=self.on_solver_error)

    def replace(self, **changes) -> "ERQConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        """A short hash of everything that changes the quantized weights.

        Left out: where and how it runs (device, batch size, evaluation size, executor, workers). Fields added after
        the first release (:data:`LATER_FIELDS`) count only when they differ from their default, so adding them
        changed no digest. In: the statistics block size when it is not :data:`DIGEST_BLOCK_ROWS` — which did change
        every digest when it became 256, so run directories of earlier versions (4096-row blocks, and 1024 in
        393a0a3 until 017c3a9, under the same digest) are not resumed into, and start over. Computed once per config
        (it is frozen)."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            d = {k: v for k, v in self.to_dict().items() if k not in NOT_DIGESTED}
            for k, default in LATER_FIELDS.items():
                if d.get(k) == default:
                    del d[k]
            from roundlab.pipeline.stats import BLOCK_ROWS
            if BLOCK_ROWS != DIGEST_BLOCK_ROWS:     # the statistics' summation blocks: a resumed run must not mix them
                d["stats_block_rows"] = BLOCK_ROWS
            cached = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
            object.__setattr__(self, "_digest", cached)
        return cached


#: The statistics block size (``roundlab.pipeline.stats.BLOCK_ROWS``) the digest was defined with; another one is
#: hashed too (it moves the float64 sums by ~1e-14, which can flip a near-tied rounding).
DIGEST_BLOCK_ROWS = 4096
#: Fields that never change the quantized weights.
NOT_DIGESTED = ("device", "batch_size", "eval_images", "executor", "workers")
#: Fields added later, with their defaults: in the digest only when set to something else.
#: ``calib_batch_size`` is one (set, it may pick another grid where two candidates' errors nearly tie).
LATER_FIELDS = {"chunk_rows": None, "task_timeout": None, "retries": 2, "on_solver_error": "raise",
                "calib_batch_size": None}


def resolve_device(device) -> str:
    """``"auto"`` → ``"cuda"`` when a CUDA device is available, else ``"cpu"``; any other value is checked
    (:func:`check_device`) and returned as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else "cpu"
    check_device(device)
    return device


def check_device(device) -> None:
    """``device`` names a torch device that exists here (one clear error for 'banana' or a missing 'cuda:7')."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise RoundlabError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RoundlabError(f"device {device!r}: no CUDA device is available here")
        if dev.index is not None and dev.index >= count:
            raise RoundlabError(f"device {device!r}: this machine has {count} CUDA device(s) (cuda:0 .. "
                                f"cuda:{count - 1})")
    elif dev.type not in ("cpu", "mps"):
        raise RoundlabError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
