#!/usr/bin/env bash
# Execute every notebook (or the ones given as arguments) headlessly in the real evcxr kernel and check their rich outputs.
# Notebooks 04 and 06 pull from a local server that speaks the Hub's protocol (no internet needed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# The committed notebooks must be what scripts/make_notebooks.py writes (their source).
python3 "$root/scripts/make_notebooks.py" --check
"$root/evcxr-prelude/install.sh"
venv="$root/target/notebook-venv"
# The local Hub, seeded with a small checkpoint in the original PyTorch format.
seed="$root/target/notebook-hub-seed"
rm -rf "$seed" && mkdir -p "$seed/mixbt-ci/tiny-r18-cifar/checkpoints"
cp "$root/tests/fixtures/tiny_r18_cifar.pth" "$seed/mixbt-ci/tiny-r18-cifar/checkpoints/"
# (Seeded before the server starts: it serves what the seed folder holds then.)
# Notebooks 04 and 06 pull MIXBT_NOTEBOOK_MODEL (a mixbt model.safetensors) through the local Hub
# when it is set (scripts/refresh-notebooks.sh: a model of the stored study), else a tiny test
# checkpoint in the original PyTorch format.
if [ -n "${MIXBT_NOTEBOOK_MODEL:-}" ]; then
  name="$(basename "$(dirname "$MIXBT_NOTEBOOK_MODEL")")"
  mkdir -p "$seed/mixbt/cifar10-study/checkpoints"
  cp "$MIXBT_NOTEBOOK_MODEL" "$seed/mixbt/cifar10-study/checkpoints/$name.safetensors"
  export MIXBT_HUB_CHECKPOINT="hub:mixbt/cifar10-study/checkpoints/$name.safetensors"
else
  export MIXBT_HUB_CHECKPOINT="hub:mixbt-ci/tiny-r18-cifar/checkpoints/tiny_r18_cifar.pth"
fi
cargo build -p mixbt-hub-server --bin mixbt-hub-server
server_bin="$root/target/x86_64-unknown-linux-gnu/debug/mixbt-hub-server"
log="$root/target/notebook-hub.log"
"$server_bin" --seed "$seed" > "$log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q HF_ENDPOINT "$log" && break; sleep 0.2; done
export HF_ENDPOINT="$(grep -o 'http://[0-9.:]*' "$log" | head -1)"
export HF_HUB_CACHE="$root/target/notebook-hub-cache"
# Notebook 06: a small real target, scikit-learn's 8x8 digits in MNIST's layout.
digits="$root/target/notebook-digits"
[ -f "$digits/mnist/t10k-labels-idx1-ubyte.gz" ] || "$venv/bin/python" "$root/scripts/digits-as-mnist.py" "$digits"
export MIXBT_TRANSFER_ROOT="$digits"
# Every training in the notebooks on a small budget unless told otherwise (the committed
# outputs: MIXBT_NOTEBOOK_BUDGET=full, scripts/refresh-notebooks.sh).
export MIXBT_NOTEBOOK_BUDGET="${MIXBT_NOTEBOOK_BUDGET:-small}"
out="$root/target/notebooks-executed"
# Arguments: notebooks to run (default: all of them).
if [ "$#" -gt 0 ]; then notebooks=("$@"); else notebooks=("$root"/notebooks/*.ipynb); fi
"$venv/bin/python" "$root/evcxr-prelude/execute.py" "$out" "${notebooks[@]}"
executed=()
for nb in "${notebooks[@]}"; do executed+=("$out/$(basename "$nb")"); done
"$venv/bin/python" "$root/evcxr-prelude/check_outputs.py" "${executed[@]}"
