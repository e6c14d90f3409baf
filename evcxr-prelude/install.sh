#!/usr/bin/env bash
# Install what the notebooks need: the evcxr Jupyter kernel 0.22.0 (cargo) and Jupyter with
# nbclient (PyPI, in target/notebook-venv). Idempotent; run from anywhere.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! evcxr_jupyter --version 2>/dev/null | grep -q "0.22.0"; then
    # From $HOME: the repository's .cargo/config.toml (evcxr's build settings) must not apply.
    (cd "$HOME" && cargo install --locked evcxr_jupyter --version 0.22.0)
fi
venv="$root/target/notebook-venv"
if [ ! -x "$venv/bin/jupyter" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check jupyter nbclient nbformat ipykernel
fi
evcxr_jupyter --install >/dev/null
"$root/evcxr-prelude/prepare-build-dir.sh"
echo "evcxr kernel installed; open the notebooks with: $venv/bin/jupyter lab $root/notebooks"
