"""The run directory cannot lie (issue 13): every persisted file is checked before it is trusted, one writer at a time,
a fresh start is fresh, transient fallbacks are retried, and results do not depend on the thread count."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from roundlab.cli import main
from roundlab.errors import RoundlabError
from roundlab.fanout import FannedSolver, ResultStore, task_key
from roundlab.fanout.fanned import shared_digest
from roundlab.fanout.store import Answer
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.run import erq_quantize
from roundlab.pipeline.rundir import RunState
from roundlab.problem import RoundingProblem
from roundlab.solvers import get_solver
from roundlab.testing.synthetic import vit_like_problem

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import tiny_model  # noqa: E402

IMAGES = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _cfg(**kw) -> ERQConfig:
    return ERQConfig.for_method("erq", **{"model": "tiny-vit", "calib_images": 4, "heldout_images": 0,
                                          "solver": "greedy", **kw})


def _run(run_dir, cfg, fresh=False):
    with RunState(run_dir, cfg, fresh=fresh) as state:
        qmodel, records = erq_quantize(tiny_model("vit"), IMAGES, cfg, state=state)
    return {k: v for k, v in qmodel.state_dict().items() if k.endswith(("weight", "bias"))}, records


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    return d, _run(d, _cfg())[0]


# 1 ------------------------------------------------------------------------------------------------------------
def test_another_configs_layers_are_refused_even_without_config_json(clean, tmp_path):
    d = tmp_path / "run"
    _run(d, _cfg(solver="nearest"))
    (d / "config.json").unlink()
    with pytest.raises(RoundlabError, match=r"holds layers of another configuration .*pass --fresh"):
        RunState(d, _cfg(), fresh=False)
    weights, _ = _run(d, _cfg(), fresh=True)
    assert _same(weights, clean[1])


def test_a_damaged_config_json_is_one_error(tmp_path):
    d = tmp_path / "run"
    RunState(d, _cfg(), fresh=False).close()
    (d / "config.json").write_bytes(b"\xff{not json")
    with pytest.raises(RoundlabError, match=r"config\.json is damaged; pass --fresh"):
        RunState(d, _cfg(), fresh=False)


# 2 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_layer_file_is_detected_and_recomputed(clean, tmp_path, capsys, damage):
    d = tmp_path / "run"
    _run(d, _cfg())
    victim = sorted((d / "layers").glob("*.pt"))[3]
    data = bytearray(victim.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "truncate":
        data = data[: len(data) // 3]
    else:
        data = b""
    victim.write_bytes(bytes(data))
    weights, _ = _run(d, _cfg())
    assert f"{victim.name} does not match its recorded checksum" in capsys.readouterr().err
    assert _same(weights, clean[1])


def test_a_tampered_record_is_detected_and_its_layer_recomputed(clean, tmp_path, capsys):
    d = tmp_path / "run"
    _run(d, _cfg())
    lines = (d / "records.jsonl").read_text().splitlines()
    r = json.loads(lines[2])
    r["errors"] = {k: v * 0.5 for k, v in r["errors"].items()}          # a plausible, wrong number
    lines[2] = json.dumps(r, sort_keys=True)
    (d / "records.jsonl").write_text("\n".join(lines) + "\n")
    weights, records = _run(d, _cfg())
    assert f"the record of layer {r['layer']}" in capsys.readouterr().err
    assert _same(weights, clean[1])
    assert next(x for x in records if x["layer"] == r["layer"])["errors"] != r["errors"]


# 3 ------------------------------------------------------------------------------------------------------------
def _stored_problem():
    p = vit_like_problem(8, 12, seed=1)
    solver = get_solver("greedy")
    return p, solver, task_key(solver, p, None, shared_digest(p))      # the key FannedSolver files it under


@pytest.mark.parametrize("damage", ["checksum", "short_blob", "status_code", "off_grid"])
def test_a_damaged_stored_answer_is_discarded_and_solved_again(tmp_path, capsys, damage):
    import sqlite3

    p, solver, key = _stored_problem()
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as st:
        ref = FannedSolver(solver, store=st)(p)
    db = sqlite3.connect(path)
    if damage == "checksum":             # one flipped bit in delta
        blob = bytearray(db.execute("SELECT delta FROM answers").fetchone()[0])
        blob[5] ^= 1
        db.execute("UPDATE answers SET delta = ?", (bytes(blob),))
    elif damage == "short_blob":
        db.execute("UPDATE answers SET bound = ?, checksum = NULL", (b"\x00" * 3,))
    elif damage == "status_code":        # a well-formed blob with an out-of-range code, checksum recomputed away
        db.execute("UPDATE answers SET status = ?, checksum = NULL", (torch.full((8,), 256).numpy().tobytes(),))
    else:                                # values off the candidates, no checksum to catch it
        db.execute("UPDATE answers SET delta = ?, checksum = NULL", (torch.full((8, 12), 0.123, dtype=torch.float64)
                                                                      .numpy().tobytes(),))
    db.commit()
    db.close()
    with ResultStore(path) as st:
        again = FannedSolver(solver, store=st)
        res = again(p)
        assert again.report()["tasks_solved"] == 1 and again.report()["tasks_reused"] == 0
    assert torch.equal(res.delta, ref.delta)
    assert "is damaged" in capsys.readouterr().err


def test_fresh_clears_the_results_store_and_every_run_file(tmp_path):
    d = tmp_path / "run"
    _run(d, _cfg())
    (d / "errors.log").write_text("old")
    (d / "result.json").write_text("{}")
    (d / "predictions.pt").write_text("old")
    with RunState(d, _cfg(), fresh=True) as state:
        assert not list(state.layers.glob("*.pt")) and state.finished_records() == {}
    assert not (d / "subproblems.sqlite").exists() and not (d / "errors.log").exists()
    assert not (d / "result.json").exists() and not (d / "records.jsonl").exists()
    assert not (d / "predictions.pt").exists()


# 5 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome, reused", [("timeout", False), ("died", False), ("error", True)])
def test_transient_fallbacks_are_retried_and_deterministic_ones_reused(tmp_path, outcome, reused):
    p, solver, key = _stored_problem()
    with ResultStore(tmp_path / "s.sqlite") as st:
        R = p.rows
        st.put(key, Answer(delta=p.nearest(), status=torch.full((R,), 6), bound=torch.full((R,), float("nan")),
                           iterations=torch.zeros(R, dtype=torch.long), row_time=torch.zeros(R),
                           fallback=torch.ones(R, dtype=torch.bool), outcome=outcome, reason=f"{outcome}: x"))
        assert st.get(key, p.rows, p.d).outcome == outcome
        fs = FannedSolver(solver, store=st)
        res = fs(p)
        assert fs.report()["tasks_reused"] == int(reused)
    if not reused:
        assert torch.equal(res.delta, solver(p).delta) and not res.fallback.any()


# 7 ------------------------------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    d = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from roundlab.pipeline.config import ERQConfig\n"
        "from roundlab.pipeline.rundir import RunState\n"
        "cfg = ERQConfig.for_method('erq', model='tiny-vit', calib_images=4, heldout_images=0, solver='greedy')\n"
        "s = RunState(%r, cfg, fresh=False); print('locked', flush=True); time.sleep(60)\n"
    ) % (str(Path(__file__).parent), str(d))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RoundlabError, match=rf"is in use by pid {holder.pid} on .*use another --run-dir"):
            RunState(d, _cfg(), fresh=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    RunState(d, _cfg(), fresh=False).close()        # released with its holder


# 8 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_a_bad_run_dir_is_one_line_before_anything_loads(tmp_path, capsys, where):
    f = tmp_path / "file"
    f.write_text("x")
    run_dir = f if where == "is_a_file" else f / "run"
    t0 = time.perf_counter()
    assert main(["quantize", "--run-dir", str(run_dir), "--quiet"]) == 2
    assert time.perf_counter() - t0 < 5.0, "the check must come before the model and data load"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("roundlab: error: --run-dir ")


def test_a_full_disk_in_the_store_is_one_error(tmp_path, monkeypatch):
    import sqlite3

    st = ResultStore(tmp_path / "s.sqlite")

    class Full:
        def execute(self, *a):
            raise sqlite3.OperationalError("database or disk is full")

    st.db = Full()
    p, _, key = _stored_problem()
    with pytest.raises(RoundlabError, match=r"cannot write \(database or disk is full\).*rerun to resume"):
        st.put(key, Answer(delta=p.nearest(), status=torch.zeros(8, dtype=torch.long), bound=torch.zeros(8),
                           iterations=torch.zeros(8, dtype=torch.long), row_time=torch.zeros(8),
                           fallback=torch.zeros(8, dtype=torch.bool)))


@pytest.mark.parametrize("content", [b"\xff\xfe garbage", b'{"no": "layer"}\n', None])
def test_report_on_malformed_records_is_one_line(tmp_path, capsys, content):
    run = tmp_path / "run"
    run.mkdir()
    if content is None:
        (run / "records.jsonl").mkdir()                 # a directory where the file should be
    else:
        (run / "records.jsonl").write_bytes(content)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("roundlab: error: ")


def test_report_says_a_run_is_partial(tmp_path, capsys):
    d = tmp_path / "run"
    _run(d, _cfg())
    assert main(["report", str(d)]) == 0
    assert "PARTIAL" in capsys.readouterr().out


# 9 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("M, match", [
    (torch.eye(4, dtype=torch.complex128), "real floating-point"), (torch.eye(4, dtype=torch.int64), "real floating"),
    (torch.eye(4).bool(), "real floating-point"), (torch.diag(torch.tensor([1.0, 1.0, 1.0, -0.5])), "semidefinite"),
])
def test_the_api_refuses_what_the_math_cannot_take(M, match):
    lo, hi = -0.3 * torch.ones(2, 4), 0.7 * torch.ones(2, 4)
    with pytest.raises(RoundlabError, match=match):
        RoundingProblem.from_candidates(lo, hi, M=M)
    if match == "semidefinite":                      # the documented way out, for a solver that handles it
        RoundingProblem.from_candidates(lo, hi, M=M, check_psd=False)


def test_a_nan_init_is_refused_naming_the_solver():
    p = vit_like_problem(2, 6)
    with pytest.raises(RoundlabError, match=r"init is not on the floor/ceil candidates at 12 element"):
        get_solver("greedy")(p, init=torch.full(p.shape, float("nan")))


def test_an_integer_checkpoint_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from roundlab.zoo import checkpoint_path, load_zoo_model

    sd = load_file(str(checkpoint_path("fmnist-vit")))
    save_file({k: (v.to(torch.int32) if v.is_floating_point() else v) for k, v in sd.items()},
              str(tmp_path / "int.safetensors"))
    with pytest.raises(RoundlabError, match=r"is stored as torch\.int32, the model needs floating-point"):
        load_zoo_model("fmnist-vit", tmp_path / "int.safetensors")


# 10 -----------------------------------------------------------------------------------------------------------
def test_persisted_layers_do_not_depend_on_the_thread_count(tmp_path):
    """fmnist-vit, 32 images (the tiny test ViT is below BLAS's threading threshold): every persisted tensor
    (W_aqer, b_aqer, final W and b) bit-identical with 1 and 3 threads."""
    from roundlab.zoo import load_model

    model, _ = load_model("fmnist-vit")
    images = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    cfg = ERQConfig.for_method("erq", model="fmnist-vit", calib_images=32, heldout_images=0, solver="nearest")
    old = torch.get_num_threads()
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            with RunState(tmp_path / str(n), cfg, fresh=False) as state:
                erq_quantize(model, images, cfg, state=state)
    finally:
        torch.set_num_threads(old)
    files = sorted(p.name for p in (tmp_path / "1" / "layers").glob("*.pt"))
    assert files and files == sorted(p.name for p in (tmp_path / "3" / "layers").glob("*.pt"))
    for f in files:
        a, b = (torch.load(tmp_path / n / "layers" / f, weights_only=True) for n in ("1", "3"))
        assert _same(a, b), f"{f} differs between 1 and 3 threads"


# 11 -----------------------------------------------------------------------------------------------------------
def test_a_nan_parameter_in_a_checkpoint_is_named(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from roundlab.zoo import checkpoint_path

    sd = load_file(str(checkpoint_path("fmnist-vit")))
    sd["blocks.1.attn.proj.weight"][0, 0] = float("nan")
    save_file(sd, str(tmp_path / "nan.safetensors"))
    assert main(["quantize", "--checkpoint", str(tmp_path / "nan.safetensors"), "--run-dir",
                 str(tmp_path / "run"), "--quiet"]) == 2
    assert "blocks.1.attn.proj.weight holds 1 NaN/Inf" in capsys.readouterr().err


def test_an_invalid_quant_opt_leaves_no_run_directory(tmp_path, capsys):
    assert main(["quantize", "--quant-opt", "no_such_option=1", "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert "unknown quant option" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_records_carry_the_digest_and_the_layer_checksum(tmp_path):
    d = tmp_path / "run"
    _run(d, _cfg())
    for line in (d / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        assert r["digest"] == _cfg().digest() and len(r["layer_sha256"]) == 64 and len(r["record_sha256"]) == 64
    assert os.path.exists(d / ".lock")
