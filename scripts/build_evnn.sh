#!/usr/bin/env bash
# Build the real EvNN (PyPI sdist evnn-pytorch==0.2.0, source only) on the CPU in a scratch venv,
# for scripts/make_evnn_goldens.py. Nothing here touches the project's own venv or tree: the sdist is
# unpacked and patched in a scratch folder, never committed, and the result lives only in the venv.
#
#   bash scripts/build_evnn.sh [VENV]        (default /tmp/evnn-venv; EVNN_SCRATCH=/tmp/evnn-build)
#
# Fixes applied here (never by hand), see docs/evnn_compat.md "Building evnn-pytorch 0.2.0":
# 1. setup.py takes the CUDA branch whenever `nvcc --version` runs: every PATH entry holding an
#    nvcc is dropped for the pip calls (CUDA_HOME plays no part in that test).
# 2. setup.py hard-codes -D_GLIBCXX_USE_CXX11_ABI=0; current torch wheels use the new ABI, so the
#    module fails to import (undefined symbol). The unpacked setup.py is patched to torch's own flag.
# 3. it links -lopenblas and includes <cblas.h>: Debian's libopenblas-dev (installed when root).
# About 3 minutes on 2 cores.
set -euo pipefail

VENV=${1:-/tmp/evnn-venv}
SCRATCH=${EVNN_SCRATCH:-/tmp/evnn-build}
EVNN_VERSION=0.2.0
TORCH_VERSION=2.13.0   # pinned: an open range pulls a multi-GB CUDA build
NUMPY_VERSION=1.26.4

start=$(date +%s)

# --- 3. BLAS headers and library -------------------------------------------------------------
if [ ! -e /usr/include/x86_64-linux-gnu/cblas.h ] && [ ! -e /usr/include/cblas.h ] \
        || ! ls /usr/lib/*/libopenblas.so >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev
    else
        echo "build_evnn.sh: needs Debian's libopenblas-dev (run as root, or apt-get install it)" >&2
        exit 1
    fi
fi

# --- 1. a PATH without nvcc --------------------------------------------------------------------
NO_NVCC_PATH=""
IFS=: read -r -a path_dirs <<< "$PATH"
for d in "${path_dirs[@]}"; do
    [ -n "$d" ] || continue
    [ -x "$d/nvcc" ] && continue
    NO_NVCC_PATH="${NO_NVCC_PATH:+$NO_NVCC_PATH:}$d"
done
run_cpu() { env PATH="$VENV/bin:$NO_NVCC_PATH" "$@"; }
if run_cpu sh -c 'command -v nvcc' >/dev/null 2>&1; then
    echo "build_evnn.sh: nvcc still reachable on the filtered PATH" >&2
    exit 1
fi

# --- scratch venv with the pinned torch --------------------------------------------------------
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
run_cpu "$PIP" install -q "torch==$TORCH_VERSION" "numpy==$NUMPY_VERSION" setuptools wheel

# --- the sdist, unpacked and patched in the scratch folder ------------------------------------
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH/dl"
# pip runs setup.py to read the sdist's metadata, and setup.py imports torch: use the venv's torch.
run_cpu "$PIP" download -q --no-binary :all: --no-deps --no-build-isolation \
    -d "$SCRATCH/dl" "evnn-pytorch==$EVNN_VERSION"
SDIST=""
for f in "$SCRATCH"/dl/evnn[_-]pytorch-"$EVNN_VERSION".tar.gz; do [ -f "$f" ] && SDIST=$f; done
[ -n "$SDIST" ] || { echo "build_evnn.sh: sdist not downloaded" >&2; exit 1; }
tar -xzf "$SDIST" -C "$SCRATCH"
SRC=""
for d in "$SCRATCH"/evnn[_-]pytorch-"$EVNN_VERSION"; do [ -d "$d" ] && SRC=$d; done
[ -f "$SRC/setup.py" ] || { echo "build_evnn.sh: no setup.py in $SDIST" >&2; exit 1; }

# --- 2. the C++ ABI flag from torch instead of the hard-coded 0 --------------------------------
"$VENV/bin/python" - "$SRC/setup.py" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
old = '"-D_GLIBCXX_USE_CXX11_ABI=0"'
if old not in text:
    sys.exit(f"{path}: {old} not found; the patch no longer applies")
new = '"-D_GLIBCXX_USE_CXX11_ABI=" + str(int(torch._C._GLIBCXX_USE_CXX11_ABI))'
open(path, "w").write(text.replace(old, new))
print(f"patched {text.count(old)} ABI flag(s) in {path}")
EOF

# --- build and install (no build isolation: the extension compiles against the venv's torch) ---
( cd "$SRC" && MAX_JOBS=2 run_cpu "$PIP" install -q --no-build-isolation --no-deps --force-reinstall . )

# --- check that the library imports and runs the CPU kernel ------------------------------------
( cd / && run_cpu "$VENV/bin/python" - <<'EOF'
import torch, evnn_pytorch, evnn_pytorch_lib
assert evnn_pytorch.__version__ == "0.2.0", evnn_pytorch.__version__
assert "egru_forward" not in evnn_pytorch_lib.__dict__, "built with CUDA"
layer = evnn_pytorch.EGRU(3, 4).eval()
y, (c, o, tr) = layer(torch.randn(5, 2, 3))
print(f"evnn_pytorch {evnn_pytorch.__version__} imports (CPU kernel only); output {tuple(y.shape)}")
EOF
)
echo "build_evnn.sh: evnn-pytorch $EVNN_VERSION in $VENV, $(( $(date +%s) - start )) s"
