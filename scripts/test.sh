#!/usr/bin/env bash
# The test command (what CI runs): every cargo test of the workspace, the CPU-kernel tests once
# more on the portable (non-AVX2) path, then every notebook
# executed headlessly in the evcxr kernel with its outputs checked, and the data-parallel tests
# (2 MPI ranks against one process) with the `mpi` feature. Installs what it needs
# (evcxr_jupyter 0.22.0 via cargo, Jupyter via PyPI, Open MPI and libclang from Debian's
# packages) on first use. MIXBT_SKIP_NOTEBOOKS=1 skips the notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
cargo test --workspace
# Data-parallel training over MPI: Open MPI (and libclang for the bindings) when missing.
if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev >/dev/null
fi
cargo test -p mixbt --features mpi --test dist -- --test-threads=1
# The CPU kernels again on their portable path (matrixmultiply, no AVX2 kernel), as on a CPU
# without AVX2/FMA, and with the AVX2 micro-kernel forced (on a CPU with AVX-512 the default is
# the AVX-512 one; tests/ops.rs also switches between them itself and says which it could not run).
MIXBT_GEMM_FALLBACK=1 cargo test -p mixbt --test ops
MIXBT_GEMM_KERNEL=avx2 cargo test -p mixbt --test ops
# Every method learns on each of those paths, and on direct (non-Winograd) convolutions.
for path in MIXBT_GEMM_FALLBACK=1 MIXBT_GEMM_KERNEL=avx2 MIXBT_CONV_WINOGRAD=0; do
    env "$path" cargo test -p mixbt --test methods every_method_trains_with_a_falling_loss
done
if [ "${MIXBT_SKIP_NOTEBOOKS:-0}" != "1" ]; then
    ./evcxr-prelude/run-notebooks.sh
fi
