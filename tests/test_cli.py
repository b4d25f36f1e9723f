"""The CLI: bad input ends in one clear line on stderr and exit status 2, and nothing is written."""

import pytest
import torch

from roundlab.cli import main
from roundlab.errors import RoundlabError
from roundlab.pipeline.config import ERQConfig
from roundlab.pipeline.run import erq_quantize


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--wbits", "9"], "wbits must be an integer in [2, 8], got 9"),
    (["--abits", "1"], "abits must be an integer in [2, 8], got 1"),
    (["--solver", "annealing"], "unknown solver 'annealing'"),
    (["--solver-opt", "bogus=1"], "unknown option(s) ['bogus']"),
    (["--solver-opt", "novalue"], "--solver-opt expects KEY=VALUE"),
    (["--data-root", "/nonexistent/fmnist"], "looked in /nonexistent/fmnist"),
    (["--method", "magic"], "unknown method 'magic'"),
    (["--executor", "dask"], "unknown executor 'dask'; choose one of serial, process, ray"),
    (["--task-timeout", "5"], "task_timeout needs --executor process or ray"),
    (["--executor", "process", "--workers", "0"], "workers must be a positive integer, got 0"),
    (["--on-solver-error", "ignore"], "on_error must be one of ('raise', 'fallback')"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["quantize", *args, "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("roundlab: error: ")
    assert message in err
    assert not run_dir.exists()


@pytest.mark.parametrize("args, message", [
    (["quantize", "--wbits", "four"], "argument --wbits: invalid int value: 'four'"),
    (["quantize", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
    (["quantize", "--seed", "-1"], "seed must be an integer in [0, 2**63), got -1"),
    (["quantize", "--lam", "inf"], "lam must be a number >= 0 and finite, got inf"),
    (["quantize", "--device", "banana"], "unknown device 'banana'"),
    (["quantize", "--quant-opt", "wbits=8"], "set them with --wbits, not --quant-opt"),
    (["quantize", "--calib-batch-size", "0"], "calib_batch_size must be a positive integer or None, got 0"),
    (["quantize", "--calib-batch-size", "-4"], "calib_batch_size must be a positive integer or None, got -4"),
])
def test_argparse_and_config_errors_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    try:
        code = main([*args, "--run-dir", str(run_dir), "--quiet"] if args[0] == "quantize" else args)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("roundlab: error: "), err
    assert message in err
    assert not run_dir.exists()


def test_nan_activations_are_one_clear_error():
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32, depth=1,
                              num_heads=2).eval()
    calib = torch.randn(4, 1, 28, 28)
    calib[0, 0, 0, 0] = float("nan")
    with pytest.raises(RoundlabError, match="saw NaN/Inf during calibration"):
        erq_quantize(model, calib, ERQConfig(model="tiny", calib_images=4, heldout_images=0))


def test_solvers_and_models_are_listed(capsys):
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    for name in ("nearest", "rr", "miqp", "greedy", "gptq", "adaround", "brute"):
        assert name in out
    assert main(["models"]) == 0
    assert "fmnist-vit" in capsys.readouterr().out


def test_an_os_error_is_one_line(tmp_path, capsys, monkeypatch):
    import roundlab.cli as cli

    def full(args):
        raise OSError(28, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(cli, "cmd_solvers", full)
    assert main(["solvers"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"roundlab: error: No space left on device ({tmp_path / 'x'})"


def _terminal_sigint() -> None:
    """In the child before exec: SIGINT as a terminal's shell gives a foreground command (default action, not
    blocked), whatever this test process was started with. An ignored or blocked SIGINT is inherited through exec,
    and Python keeps an ignored SIGINT ignored, so the command would rightly not see the Ctrl-C. That is what made
    this test fail in test runs started as background jobs of a non-interactive shell (``bash .ci/run &``): POSIX
    starts those with SIGINT ignored (checked: ``(python3 -c 'import signal; print(signal.getsignal(2))' &)``
    prints 1, SIG_IGN)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_is_one_line_without_worker_tracebacks(tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does) while worker processes solve."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "roundlab.cli", "quantize", "--plugin", "roundlab.testing.faulty",
                             "--solver", "faulty",
                             "--solver-opt", "inner=greedy", "--solver-opt", "delay=0.5", "--executor", "process",
                             "--workers", "2", "--chunk-rows", "8", "--eval-images", "100", "--run-dir", str(run),
                             "--quiet"], stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_terminal_sigint)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not (run / "subproblems.sqlite").exists():
        time.sleep(0.1)
    time.sleep(1.0)                                  # workers are mid-task
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("roundlab: interrupted")


def _all_parsers(parser):
    """``parser`` and, depth first, every subcommand parser below it."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_flag_of_every_subcommand_has_help():
    import argparse
    import dataclasses
    import re

    from roundlab.cli import _FLAG_HELP, build_parser

    lacking = []
    for parser in _all_parsers(build_parser()):
        parser.format_help()                          # argparse %-formats help: a stray '%' would fail here
        actions = list(parser._actions)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                actions += action._choices_actions    # each subcommand's line in `roundlab --help`
        for action in actions:
            text = re.sub(r"\(default: [^)]*\)$", "", action.help or "").strip()
            if not text or action.help == argparse.SUPPRESS:
                lacking.append(f"{parser.prog} {'/'.join(action.option_strings) or action.dest}")
    assert not lacking, f"flags without help: {lacking}"
    fields = {f.name for f in dataclasses.fields(ERQConfig)} - {"solver_options", "quant_options"}
    assert not fields - set(_FLAG_HELP), f"ERQConfig fields without a _FLAG_HELP entry: {fields - set(_FLAG_HELP)}"


def test_solvers_lists_declarations_and_hides_test_only_solvers():
    """`roundlab solvers` shows each solver's declared claims; the fault-injection solver only with --plugin."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "roundlab.cli", "solvers"], capture_output=True, text=True,
                         check=True).stdout
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "faulty" not in rows and {"rr", "bnb", "miqp", "nearest"} <= set(rows)
    assert "exact, monotone, proxy+samples" in rows["miqp"] and "exact" not in rows["rr"]
    plugged = subprocess.run([sys.executable, "-m", "roundlab.cli", "solvers", "--plugin", "roundlab.testing.faulty"],
                             capture_output=True, text=True, check=True).stdout
    assert any(line.startswith("faulty ") for line in plugged.splitlines())
    bad = subprocess.run([sys.executable, "-m", "roundlab.cli", "solvers", "--plugin", "no_such_module_xyz"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "roundlab: error: --plugin no_such_module_xyz: cannot import it (No module named 'no_such_module_xyz')"
