#!/usr/bin/env bash
# The test command (what CI runs): every cargo test of the workspace, then every notebook
# executed headlessly in the evcxr kernel with its outputs checked. Installs what it needs
# (evcxr_jupyter 0.22.0 via cargo, Jupyter via PyPI) on first use. MIXBT_SKIP_NOTEBOOKS=1 skips
# the notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
cargo test --workspace
if [ "${MIXBT_SKIP_NOTEBOOKS:-0}" != "1" ]; then
    ./evcxr-prelude/run-notebooks.sh
fi
