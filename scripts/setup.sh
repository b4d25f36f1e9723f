#!/usr/bin/env bash
# Set up roundlab on a fresh machine: Fashion-MNIST from Debian (where apt is available), a torch/torchvision pair
# that imports together, and roundlab itself (editable) with its test and MIQP extras. Idempotent: a second run only
# checks. Offline-safe: it needs only the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/t10k-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing Debian's dataset-fashion-mnist"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PY=${PYTHON:-python3}
# torch + torchvision that import side by side (see README "Set-up notes").
case "$(uname -m)" in
  aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
  *)             TORCH="torch==2.14.1 torchvision==0.29.1" ;;
esac
if ! $PY -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH"
  PIP_ROOT_USER_ACTION=ignore $PY -m pip install -q --disable-pip-version-check $TORCH
fi
# Always (re)install this checkout editable, so the `roundlab` command points here; quick when nothing is missing.
PIP_ROOT_USER_ACTION=ignore $PY -m pip install -q --disable-pip-version-check -e ".[test]"
$PY -c "import roundlab, torch, timm, pulp; print(f'[setup] roundlab {roundlab.__version__}, torch {torch.__version__}, timm {timm.__version__}, pulp {pulp.__version__}')"
