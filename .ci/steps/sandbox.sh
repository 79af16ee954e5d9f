# The sandbox's system dependencies: bubblewrap (the first isolation path), libseccomp
# (loaded by pyseccomp, from the `sandbox` extra) and util-linux's unshare (the
# hostile-input suite's outer pid namespace where the host permits one: a net, the
# suite runs without it). Sourced by .ci/run with the venv active and the repo root
# as cwd; idempotent.

_sandbox_missing=()
command -v bwrap >/dev/null 2>&1 || _sandbox_missing+=(bubblewrap)
command -v unshare >/dev/null 2>&1 || _sandbox_missing+=(util-linux)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || _sandbox_missing+=(libseccomp2)
if ((${#_sandbox_missing[@]})); then
  _sudo=""
  [[ $(id -u) -eq 0 ]] || _sudo="sudo"
  $_sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -q "${_sandbox_missing[@]}"
fi
unset _sandbox_missing _sudo

# The seccomp binding (also in the `sandbox` extra that install.sh installs).
python -c "import pyseccomp" 2>/dev/null || python -m pip install -q "pyseccomp>=0.1.2"

# What this machine offers; the test suite forces each path that works.
cascode doctor || echo "sandbox: no isolation path works on this machine" >&2
