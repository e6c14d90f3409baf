#!/usr/bin/env bash
# Write the notebooks from scripts/make_notebooks.py, execute them in the evcxr kernel (as CI
# does, with the local Hub server and the fixture data), and commit-ready: copy the executed
# outputs (SVG charts, tables, images) into notebooks/*.ipynb so that readers see them on GitHub.
# Arguments: notebooks to refresh (default: all).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python3 scripts/make_notebooks.py
./evcxr-prelude/run-notebooks.sh "$@"
python3 scripts/make_notebooks.py --outputs "$root/target/notebooks-executed"
du -h notebooks/*.ipynb
