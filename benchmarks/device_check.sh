#!/usr/bin/env bash
# The one prepared device check for a session lent a GPU: run from the repository root as
#
#     bash benchmarks/device_check.sh                 # on the GPU machine: everything lands in "$OUT"
#     DEVICE=cpu bash benchmarks/device_check.sh      # dry run on any machine, tiny sizes (a few minutes)
#
# Budgeted to end within BUDGET_S seconds (default 480, setup included): every step runs under `timeout`, capped by
# what is left of the budget, and a failing or timed-out step does not stop the next one. Steps, by priority:
#   env      nvidia-smi and torch's view of the device (TF32 switches included) -> env.txt
#   tests    the tests that need CUDA (every test file that mentions cuda, -k cuda) -> tests.log
#   bench    benchmarks/bench_scale.py --device $DEVICE: $BENCH_MODEL at $BENCH_SMALL images with rr, the end-to-end
#            check below, then greedy at $BENCH_SMALL, rr at $BENCH_LARGE, tabu at $BENCH_SMALL (BENCH_TABU=0: not)
#            -> bench_scale.jsonl (one JSON line per run), bench.log
#   e2e      `roundlab quantize` on fmnist-vit (W4A4 erq rr, $EVAL_IMAGES test images) with --device $DEVICE, then
#            --device cpu, and the comparison of the two run directories (final weights layer by layer, grid codes,
#            metrics, per-image predictions) -> quantize.log, compare.json, runs.tar.gz (both runs' json files)
# Each step's exit status and wall time -> steps.log. Eight files at most come back from $OUT; this writes eight.
#
# The GPU machine is offline: torch, timm, numpy, scipy, safetensors and tqdm are expected to be there already
# (scripts/setup.sh runs only if one is missing, and needs the package registries). roundlab is used from this
# checkout (PYTHONPATH), not installed. Wheels in .whl/ (carried) are installed to a private target first.
# Fashion-MNIST (for the end-to-end step) is read from $FMNIST_DIR, .dev/fashion-mnist (carry .dev), Debian's
# /usr/share/datasets/fashion-mnist or ~/.cache/roundlab/fashion-mnist; without it that step is skipped. To carry it:
#     mkdir -p .dev/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .dev/fashion-mnist/   # 30 MB
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/runs/device_check}
mkdir -p "$OUT"
if [ "$DEVICE" = cpu ]; then                            # the dry run: tiny sizes
  BUDGET_S=${BUDGET_S:-900}; BENCH_MODEL=${BENCH_MODEL:-test_vit}; BENCH_SMALL=${BENCH_SMALL:-4}
  BENCH_LARGE=${BENCH_LARGE:-8}; EVAL_IMAGES=${EVAL_IMAGES:-200}
else
  BUDGET_S=${BUDGET_S:-480}; BENCH_MODEL=${BENCH_MODEL:-deit_small_patch16_224}; BENCH_SMALL=${BENCH_SMALL:-32}
  BENCH_LARGE=${BENCH_LARGE:-1024}; EVAL_IMAGES=${EVAL_IMAGES:-1000}
fi
BENCH_TABU=${BENCH_TABU:-1}
START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
: >"$OUT/steps.log"
printf 'device=%s budget=%ss bench=%s@%s/%s eval_images=%s out=%s\n' "$DEVICE" "$BUDGET_S" "$BENCH_MODEL" \
  "$BENCH_SMALL" "$BENCH_LARGE" "$EVAL_IMAGES" "$OUT" >>"$OUT/steps.log"

# step NAME LIMIT_S LOG CMD...: run CMD under timeout (capped by the budget left), append its output to LOG and its
# exit status and wall time to steps.log. Returns CMD's status (124: timed out; 125: skipped, no budget left).
step() {
  local name=$1 limit=$2 log=$3 left t0 rc ms
  shift 3
  left=$((BUDGET_S - ($(date +%s) - START)))
  if [ "$left" -lt 20 ]; then
    printf '%-34s skipped: %ss of the budget left\n' "$name" "$left" >>"$OUT/steps.log"
    return 125
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  printf '\n===== %s (limit %ss) =====\n' "$name" "$limit" >>"$log"
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '%-34s rc=%-3s wall=%4d.%01ds limit=%ss\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "$limit" \
    >>"$OUT/steps.log"
  return $rc
}

# ---------------------------------------------------------------------------------------------------------- setup
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  step "wheels (.whl)" 120 "$OUT/env.txt" $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$WORK/site" .whl/*.whl && export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
if ! $PY -c "import torch, timm, numpy, scipy, safetensors, tqdm" >/dev/null 2>&1; then
  step "setup (scripts/setup.sh)" 300 "$OUT/env.txt" bash scripts/setup.sh
fi

# ---------------------------------------------------------------------------------------------------------- env
{ command -v nvidia-smi >/dev/null && nvidia-smi
  echo "git HEAD: $(git rev-parse HEAD 2>/dev/null || echo '(no .git)')"
  echo "roundlab/*.py sha256: $(find roundlab -name '*.py' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
} >>"$OUT/env.txt" 2>&1
step "env" 60 "$OUT/env.txt" $PY - "$DEVICE" <<'PY'
import importlib.util, os, platform, sys
import torch
import roundlab
from roundlab.solvers.base import sync_every
dev = sys.argv[1]
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("roundlab", roundlab.__version__, "timm", importlib.import_module("timm").__version__)
print("optional:", {m: importlib.util.find_spec(m) is not None for m in ("pulp", "highspy", "numba", "ray", "cvxpy")})
print("cpu threads", torch.get_num_threads(), "cores", os.cpu_count())
print("cuda available", torch.cuda.is_available(), "devices", torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device 0:", p.name, f"cc {p.major}.{p.minor}", f"{p.total_memory / 2**30:.1f} GiB",
          p.multi_processor_count, "SMs")
    print("tf32: matmul", torch.backends.cuda.matmul.allow_tf32, "cudnn", torch.backends.cudnn.allow_tf32,
          "float32_matmul_precision", torch.get_float32_matmul_precision())
print("rr/greedy iterations per host read on", dev, "=", sync_every(dev))
PY

# ---------------------------------------------------------------------------------------------------------- tests
mapfile -t CUDA_TESTS < <(grep -rl --include='test_*.py' cuda tests | sort)
step "tests -k cuda (${#CUDA_TESTS[@]} files)" 180 "$OUT/tests.log" \
  $PY -m pytest -q -rs -p no:cacheprovider -k cuda "${CUDA_TESTS[@]}"

# ---------------------------------------------------------------------------------------------------------- bench
bench() {  # bench IMAGES SOLVER LIMIT_S
  step "bench $BENCH_MODEL $1 img $2" "$3" "$OUT/bench.log" $PY benchmarks/bench_scale.py --models "$BENCH_MODEL" \
    --images "$1" --solvers "$2" --device "$DEVICE" --out "$OUT/bench_scale.jsonl"
}
bench "$BENCH_SMALL" rr 180

# ---------------------------------------------------------------------------------------------------------- e2e
FMNIST=""
for d in "${FMNIST_DIR:-}" "$ROOT/.dev/fashion-mnist" /usr/share/datasets/fashion-mnist \
         "${HOME:-/root}/.cache/roundlab/fashion-mnist"; do
  if [ -n "$d" ] && ls "$d"/t10k-images-idx3-ubyte* >/dev/null 2>&1; then FMNIST=$d; break; fi
done
if [ -z "$FMNIST" ]; then
  printf '%-34s skipped: no Fashion-MNIST (see the header: carry .dev/fashion-mnist)\n' "e2e" >>"$OUT/steps.log"
else
  printf '%-34s %s\n' "fashion-mnist" "$FMNIST" >>"$OUT/steps.log"
  Q=(-m roundlab.cli quantize --model fmnist-vit --wbits 4 --abits 4 --method erq --solver rr --calib-images 32
     --eval-images "$EVAL_IMAGES" --data-root "$FMNIST" --quiet --fresh)
  step "quantize fmnist-vit --device $DEVICE" 150 "$OUT/quantize.log" $PY "${Q[@]}" --device "$DEVICE" \
    --run-dir "$WORK/dev/run"
  step "quantize fmnist-vit --device cpu" 180 "$OUT/quantize.log" $PY "${Q[@]}" --device cpu --run-dir "$WORK/cpu/run"
  cat >"$WORK/compare.py" <<'PY'
"""Compare two run directories of the same configuration (final weights, grid codes, metrics, predictions)."""
import json, sys
from pathlib import Path
import torch

a, b, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
res = {d: json.loads((d / "result.json").read_text()) for d in (a, b)}
recs = {d: {r["layer"]: r for r in map(json.loads, (d / "records.jsonl").read_text().splitlines())} for d in (a, b)}
layers, elements, changed, identical = [], 0, 0, 0
for f in sorted((a / "layers").glob("*.pt")):
    sa, sb = torch.load(f, weights_only=True), torch.load(b / "layers" / f.name, weights_only=True)
    W, V = sa["W"].reshape(sa["W"].shape[0], -1), sb["W"].reshape(sb["W"].shape[0], -1)
    row_max = torch.maximum(W.abs().amax(1, keepdim=True), V.abs().amax(1, keepdim=True)).clamp_min(1e-300)
    rel = (W - V).abs() / row_max
    # Final weights sit on their grid: a different grid point (code) moves a weight by a whole step (>= ~1e-2 of
    # the row's largest |W| at 4 bits), grid round-off only by ulps. 1e-3 of the row's max separates the two.
    code = rel > 1e-3
    same = all(torch.equal(sa[k], sb[k]) for k in sa)
    aq = float((sa["W_aqer"] - sb["W_aqer"]).abs().max() / sa["W_aqer"].abs().max().clamp_min(1e-300))
    ra, rb = recs[a][f.stem], recs[b][f.stem]
    wa, wb = ra.get("wqer") or {}, rb.get("wqer") or {}
    layers.append({"layer": f.stem, "elements": W.numel(), "bit_identical": same, "codes_changed": int(code.sum()),
                   "max_rel_dW_same_code": float(rel[~code].max()) if (~code).any() else 0.0,
                   "w_aqer_max_rel_diff": aq, "wqer_objective": [wa.get("objective"), wb.get("objective")],
                   "final_error": [ra["errors"].get("final"), rb["errors"].get("final")]})
    elements += W.numel(); changed += int(code.sum()); identical += same
pa, pb = (torch.load(d / "predictions.pt", weights_only=True) for d in (a, b))
summary = {
    "runs": [str(a), str(b)], "devices": [res[a]["config"]["device"], res[b]["config"]["device"]],
    "same_config_digest": res[a]["digest"] == res[b]["digest"],
    "layers": len(layers), "layers_bit_identical": identical, "elements": elements, "codes_changed": changed,
    "codes_changed_frac": changed / max(elements, 1),
    "w_aqer_max_rel_diff": max(l["w_aqer_max_rel_diff"] for l in layers),
    "wqer_objective_sum": [res[a]["wqer"].get("objective"), res[b]["wqer"].get("objective")],
    "fp": [res[a]["fp"], res[b]["fp"]], "quantized": [res[a]["quantized"], res[b]["quantized"]],
    "predictions_match": float((pa["prediction"] == pb["prediction"]).double().mean()),
    "times": [res[a]["times"], res[b]["times"]], "memory": [res[a].get("memory"), res[b].get("memory")],
    "per_layer": layers,
}
out.write_text(json.dumps(summary, indent=1))
print(json.dumps({k: v for k, v in summary.items() if k not in ("per_layer", "times", "memory")}, indent=1))
PY
  if [ -f "$WORK/dev/run/result.json" ] && [ -f "$WORK/cpu/run/result.json" ]; then
    step "compare $DEVICE vs cpu" 60 "$OUT/quantize.log" $PY "$WORK/compare.py" "$WORK/dev/run" "$WORK/cpu/run" \
      "$OUT/compare.json"
  else
    printf '%-34s skipped: a run has no result.json (see quantize.log)\n' "compare" >>"$OUT/steps.log"
  fi
  (cd "$WORK" && tar czf "$OUT/runs.tar.gz" --ignore-failed-read dev/run/*.json dev/run/records.jsonl \
    cpu/run/*.json cpu/run/records.jsonl 2>/dev/null)
fi

# ---------------------------------------------------------------------------------------------------------- more bench
bench "$BENCH_SMALL" greedy 180
bench "$BENCH_LARGE" rr 240
[ "$BENCH_TABU" = 1 ] && bench "$BENCH_SMALL" tabu 240

printf 'total wall %ss; outputs: %s\n' $(($(date +%s) - START)) "$(cd "$OUT" && ls | tr '\n' ' ')" >>"$OUT/steps.log"
rm -rf "$WORK"
cat "$OUT/steps.log"
exit 0
