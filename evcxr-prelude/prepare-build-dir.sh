#!/usr/bin/env bash
# Prepare evcxr's persistent build folder (notebooks/evcxr.toml: tmpdir = ../target/evcxr) so the
# kernel reuses what `cargo build`/`cargo test` compiled: evcxr always builds into
# `<tmpdir>/target`, so that path is made a link to the workspace's `target/`, and the
# workspace's Cargo.lock is copied there so the notebook crate resolves the same versions.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/target/evcxr"
mkdir -p "$dir"
if [ -e "$dir/target" ] && [ ! -L "$dir/target" ]; then
    rm -rf "$dir/target"
fi
ln -sfn .. "$dir/target"
cp "$root/Cargo.lock" "$dir/Cargo.lock"
