#!/usr/bin/env bash
# Set up and run the main job on a fresh machine: build mixbt, pre-train Mixed Barlow Twins on
# the built-in data set (preset `quickstart`), print k-NN accuracy against the random network.
# Extra arguments go to `mixbt pretrain` (e.g. --out runs/mine --seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
exec cargo run -p mixbt --bin mixbt -- pretrain --preset quickstart --out runs/quickstart "$@"
