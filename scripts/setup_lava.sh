#!/usr/bin/env bash
# Idempotent: install Lava (lava-nc 0.10.0) into the virtual environment VENV (default .venv).
# lava-nc declares Requires-Python <3.11 but runs on 3.11 after one fix, which the project applies
# at import time (egru_deploy/targets/loihi2/lava_compat.py), so the installed files stay pristine.
# Its dependencies are pinned here because --no-deps leaves them unprotected (numpy must stay < 2).
set -euo pipefail
VENV=${1:-.venv}
cd "$(dirname "$0")/.."
PY="$VENV/bin/python"
PIP="$VENV/bin/pip"

if "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('lava-nc') != '0.10.0')" 2>/dev/null; then
    echo "lava-nc 0.10.0 already installed in $VENV"
else
    "$PIP" install -q numpy==1.26.4 scipy==1.17.1 networkx==2.8.7 asteval==0.9.33 "scikit-learn>=1.5,<2"
    "$PIP" install -q --no-deps --ignore-requires-python lava-nc==0.10.0
fi
# Smoke test through the project's compatibility hook: fails loudly if the fix no longer applies.
"$PY" -c "from egru_deploy.targets.loihi2 import lava_compat; lava_compat.import_lava(); print('lava OK')"
