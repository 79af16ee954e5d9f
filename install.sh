#!/usr/bin/env bash
# Install cascode into ./.venv with the embedded model family.
#
#   ./install.sh            # the package, llama.cpp, the embedded models, server, calibration
#   ./install.sh --dev      # the same plus the test and lint tools
#
# llama-cpp-python is source-only on the registry. Built with llama.cpp's default
# -march=native it crashes on CPUs that report instructions their VM does not
# allow (AMX), so it is built here for a fixed x86-64 feature set
# (GGML_NATIVE=OFF, AVX2/AVX-512), without the multimodal library we do not use
# (LLAVA_BUILD=OFF), and the wheel is kept in a cache for the next run.
set -euo pipefail
cd "$(dirname "$0")"

EXTRAS="models,server,calibrate,sandbox"
[[ "${1:-}" == "--dev" ]] && EXTRAS="$EXTRAS,dev"
LLAMA_VERSION=0.3.36
PY=${PYTHON:-python3}
CACHE=${CASCODE_BUILD_CACHE:-$HOME/.cache/cascode-build}
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON -DLLAVA_BUILD=OFF}"
FLAGS_KEY=$(printf '%s' "$CMAKE_ARGS" | sha256sum | cut -c1-12)
WHEELS="$CACHE/wheels-$FLAGS_KEY"

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ ! -x .venv/bin/python ]]; then
  step "creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel

if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  step "building llama-cpp-python $LLAMA_VERSION (about 5 minutes; cached in $WHEELS)"
  mkdir -p "$WHEELS"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) .venv/bin/python -m pip wheel -q --no-deps --no-cache-dir \
    -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
fi

step "installing cascode[$EXTRAS]"
.venv/bin/python -m pip install -q --find-links "$WHEELS" -e ".[$EXTRAS]"
# torch only for the transformers backend, pinned to the CPU wheel (an unpinned
# torch pulls several GB of CUDA packages).
if [[ "${CASCODE_WITH_TORCH:-1}" == 1 ]] && grep -q '^transformers = ' pyproject.toml; then
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e ".[transformers]"
fi

step "assembling and verifying the embedded models"
.venv/bin/cascode models install

step "done: try   printf 'def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n' | .venv/bin/cascode complete"
