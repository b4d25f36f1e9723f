"""A resumable ERQ run on a tiny randomly initialised ViT, for the SIGKILL tests (run as a script).

    python kill_target.py RUN_DIR EXECUTOR DELAY

Writes ``RUN_DIR/final.pt`` (every layer's final weights) when it completes. The solver is ``faulty`` with no fault:
greedy answers after ``DELAY`` seconds per task, so a run lasts long enough to be killed at many points.
"""

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "pipeline"))

from tiny_models import tiny_model  # noqa: E402

import roundlab.testing.faulty  # noqa: E402,F401  (registers the solver this run uses)
from roundlab.pipeline.config import ERQConfig  # noqa: E402
from roundlab.pipeline.run import RunState, erq_quantize  # noqa: E402


def config(executor: str, delay: float) -> ERQConfig:
    return ERQConfig.for_method("erq", model="tiny-vit", calib_images=4, heldout_images=0, solver="faulty",
                                solver_options={"inner": "greedy", "delay": delay}, chunk_rows=8,
                                executor=executor, workers=2 if executor != "serial" else 1)


def run(run_dir: Path, executor: str, delay: float) -> dict:
    torch.manual_seed(0)
    images = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    cfg = config(executor, delay)
    state = RunState(run_dir, cfg, fresh=False)
    fanout: dict = {}
    qmodel, records = erq_quantize(tiny_model("vit"), images, cfg, state=state, fanout=fanout)
    (run_dir / "fanout.json").write_text(json.dumps(fanout, default=str))
    final = {k: v.clone() for k, v in qmodel.state_dict().items() if k.endswith(("weight", "bias"))}
    torch.save(final, run_dir / "final.pt.tmp")
    (run_dir / "final.pt.tmp").replace(run_dir / "final.pt")
    return final


if __name__ == "__main__":
    run(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
