#!/usr/bin/env bash
# Build `mixbt` with the `cuda` feature on a machine without a GPU or a system CUDA toolkit,
# using nvcc, headers and libraries from PyPI: CUDA 13.2 (the PyPI wheels of CUDA 12 carry
# ptxas but no nvcc; CUDA 13's `nvidia-cuda-nvcc` + `nvidia-nvvm` + `nvidia-cuda-crt` are a
# complete compiler; cudarc 0.19 supports up to 13.4; 13.2 matches PyTorch's cu132 wheels).
# The binary links the CUDA libraries dynamically: it runs wherever the NVIDIA driver and the
# CUDA 13 libraries are (e.g. a machine with PyTorch's cu13 wheels: put nvidia/cu13/lib on
# LD_LIBRARY_PATH).
#
#   scripts/build-cuda.sh [--cudnn] [--check]  → target/cuda/x86_64-unknown-linux-gnu/debug/mixbt
#
# --check: `cargo check` only (type-checks every CUDA code path and runs the kernels' build
# script, i.e. nvcc compiles candle's PTX; no binary): a quicker proof that the toolchain works.
#
# Environment: CUDA_COMPUTE_CAP (default 80: PTX for sm_80, JIT-compiled for newer GPUs such as
# H100/H200), MIXBT_CUDA_VENV (default target/cuda13-venv), CUDA_PIP_VERSION (default 13.2.*).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
features="cuda"
pkgs_extra=()
cmd="build"
for a in "$@"; do
    case "$a" in
        --cudnn) features="cudnn"; pkgs_extra=("nvidia-cudnn-cu13") ;;
        --check) cmd="check" ;;
        *) echo "unknown option $a (use --cudnn, --check)" >&2; exit 2 ;;
    esac
done
ver="${CUDA_PIP_VERSION:-13.2.*}"
venv="${MIXBT_CUDA_VENV:-$root/target/cuda13-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "nvidia-cuda-nvcc==$ver" "nvidia-nvvm==$ver" "nvidia-cuda-crt==$ver" "nvidia-cuda-runtime==$ver" \
    "nvidia-cuda-nvrtc==$ver" "nvidia-cuda-cccl" "nvidia-cublas<14" "nvidia-curand<11" "${pkgs_extra[@]}"
site="$("$venv/bin/python" -c 'import nvidia, os; print(nvidia.__path__[0])')"

# The CUDA 13 wheels install one toolkit-shaped folder, nvidia/cu13 (bin/nvcc, nvvm/, include/,
# lib/): use it as CUDA_ROOT, with lib64 → lib, unversioned .so links for the linker, and a stub
# libcuda.so (the driver library is not on PyPI; the real libcuda.so.1 of the NVIDIA driver is
# loaded at run time, by soname).
cuda="$site/cu13"
[ -e "$cuda/lib64" ] || ln -s lib "$cuda/lib64"
for f in "$cuda"/lib/*.so.*; do
    [ -e "$f" ] || continue
    base="$(basename "$f" | sed -E 's/\.so\..*/.so/')"
    [ -e "$cuda/lib/$base" ] || ln -s "$(basename "$f")" "$cuda/lib/$base"
done
mkdir -p "$cuda/lib/stubs"
if [ ! -e "$cuda/lib/stubs/libcuda.so" ]; then
    syms="$(grep -rhoE '\bcu[A-Z][A-Za-z0-9_]*(_v[0-9]+)?\b' "$cuda/include/cuda.h" | sort -u)"
    for s in $syms; do echo "int $s(void) { return 999; }"; done > "$cuda/lib/stubs/cuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$cuda/lib/stubs/cuda_stub.c"
fi
export CUDA_ROOT="$cuda" CUDA_PATH="$cuda" CUDA_TOOLKIT_ROOT_DIR="$cuda"
export PATH="$cuda/bin:$PATH"
export LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs:${LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
nvcc --version | tail -2
# A self-contained binary (static libstd: the GPU machine has no Rust toolchain), hence without
# the workspace's -Cprefer-dynamic: an empty CARGO_ENCODED_RUSTFLAGS replaces build.rustflags
# (`--config 'build.rustflags=[]'` would only be merged with it).
CARGO_ENCODED_RUSTFLAGS="" cargo "$cmd" -p mixbt --bin mixbt --features "$features" --target-dir "$root/target/cuda"
if [ "$cmd" = "check" ]; then
    echo "cargo check --features $features passed (PTX compiled for sm_$CUDA_COMPUTE_CAP)"
    exit 0
fi

bin="$root/target/cuda/x86_64-unknown-linux-gnu/debug/mixbt"
# The device tool carries at most 64 MiB: a gzip copy (≈ 30 MB) travels, unpack it there.
gzip -1 -c "$bin" > "$bin.gz"
echo "built $bin (features: $features, PTX for sm_$CUDA_COMPUTE_CAP); to carry: $bin.gz ($(du -h "$bin.gz" | cut -f1))"
echo "needs at run time: libcuda.so.1 (driver), libcublas/libcublasLt/libcurand/libnvrtc (CUDA 13)"
