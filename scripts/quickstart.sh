#!/usr/bin/env bash
# Set up and run the main job on a fresh machine: build mixbt, pre-train Mixed Barlow Twins on
# the built-in data set (preset `quickstart`), print k-NN accuracy against the random network.
# Extra arguments go to `mixbt pretrain` (e.g. --seed 1, --epochs 6). The run goes to
# runs/quickstart (runs/quickstart-seed<S> with --seed S), replacing this script's previous run
# there; with --out DIR it goes to DIR, which must not hold another run; --resume DIR continues
# a run (e.g. --resume runs/quickstart --epochs 6).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
preset=(--preset quickstart)
out=(--out runs/quickstart --overwrite)
prev=""
for a in "$@"; do
    case "$a" in
        --out|--out=*) out=() ;;
        --resume|--resume=*) out=(); preset=() ;;
    esac
    if [ "$prev" = "--seed" ] && [ ${#out[@]} -gt 0 ]; then out=(--out "runs/quickstart-seed$a" --overwrite); fi
    case "$a" in --seed=*) [ ${#out[@]} -gt 0 ] && out=(--out "runs/quickstart-seed${a#--seed=}" --overwrite) ;; esac
    prev="$a"
done
exec cargo run -p mixbt --bin mixbt -- pretrain "${preset[@]}" "${out[@]}" "$@"
