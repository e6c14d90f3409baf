#!/usr/bin/env bash
# Write the notebooks from scripts/make_notebooks.py, execute them in the evcxr kernel on the
# full budget their text describes (MIXBT_NOTEBOOK_BUDGET=full), and copy the executed outputs
# (SVG charts, tables, images) into notebooks/*.ipynb so that readers see them on GitHub.
# Notebooks 04 and 06 pull the study's Mixed Barlow Twins model (runs/study-overfitting/
# mixbt-d128-s0, or the same run trained again from its preset, cifar10-cpu-study) through the local Hub; notebook 04 measures it on the real
# CIFAR-10 in data/cifar10-jpg (when present) with the paper's k-NN protocol.
# Arguments: notebooks to refresh (default: all).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python3 scripts/make_notebooks.py
export MIXBT_NOTEBOOK_BUDGET=full
if [ "$#" -gt 0 ]; then notebooks=("$@"); else notebooks=(notebooks/*.ipynb); fi
# Only notebooks 04 and 06 need the model (training it again takes ~25 min).
if printf '%s\n' "${notebooks[@]}" | grep -q -e '/0[46]-' -e '^0[46]-'; then
  model="$root/runs/study-overfitting/mixbt-d128-s0/model.safetensors"
  if [ ! -f "$model" ] && [ -d "$root/data/cifar10-jpg/train" ]; then
    # The study's run folders are gone: the same run again from its preset (bit-exact, ~25 min on 2 cores).
    model="$root/runs/notebook-model/mixbt-d128-s0/model.safetensors"
    [ -f "$model" ] || cargo run -p mixbt --bin mixbt -- pretrain --preset cifar10-cpu-study --data-dir data/cifar10-jpg \
      --seed 0 --out "$(dirname "$model")" --no-progress
  fi
  [ -f "$model" ] && export MIXBT_NOTEBOOK_MODEL="$model"
fi
others=()
hub=()
for nb in "${notebooks[@]}"; do
  case "$(basename "$nb")" in 04-*) hub+=("$nb") ;; *) others+=("$nb") ;; esac
done
[ "${#others[@]}" -eq 0 ] || ./evcxr-prelude/run-notebooks.sh "${others[@]}"
if [ "${#hub[@]}" -gt 0 ]; then
  if [ -d "$root/data/cifar10-jpg/train" ]; then
    MIXBT_CIFAR10="$root/data/cifar10-jpg" ./evcxr-prelude/run-notebooks.sh "${hub[@]}"
  else
    ./evcxr-prelude/run-notebooks.sh "${hub[@]}"
  fi
fi
python3 scripts/make_notebooks.py --outputs "$root/target/notebooks-executed"
du -h notebooks/*.ipynb
