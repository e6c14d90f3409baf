#!/usr/bin/env bash
# Build `mixbt` with the `cuda` feature on a machine without a GPU or a system CUDA toolkit,
# using nvcc, headers and libraries from PyPI (CUDA 12.x, which candle 0.11 / cudarc 0.19 and
# current drivers accept). The binary links the CUDA libraries dynamically: it runs wherever the
# NVIDIA driver and the CUDA 12 runtime libraries are (e.g. a machine with PyTorch's nvidia-*
# wheels: put their lib folders on LD_LIBRARY_PATH).
#
#   scripts/build-cuda.sh [--cudnn]          → target/cuda/x86_64-unknown-linux-gnu/debug/mixbt
#
# Environment: CUDA_COMPUTE_CAP (default 80: PTX for sm_80, JIT-compiled for newer GPUs such as
# H100/H200), MIXBT_CUDA_VENV (default target/cuda-venv), CUDA_PIP_VERSION (default 12.4.*).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
features="cuda"
pkgs_extra=()
if [ "${1:-}" = "--cudnn" ]; then
    features="cudnn"
    pkgs_extra=("nvidia-cudnn-cu12")
fi
ver="${CUDA_PIP_VERSION:-12.4.*}"
venv="${MIXBT_CUDA_VENV:-$root/target/cuda-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "nvidia-cuda-nvcc-cu12==$ver" "nvidia-cuda-runtime-cu12==$ver" "nvidia-cuda-nvrtc-cu12==$ver" \
    "nvidia-cuda-cccl-cu12==$ver" "nvidia-cublas-cu12" "nvidia-curand-cu12" "${pkgs_extra[@]}"
site="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))')/nvidia"

# A CUDA_ROOT laid out like a toolkit: bin/nvcc, include/, lib64/ (with .so links and a libcuda stub).
cuda="$root/target/cuda-root"
rm -rf "$cuda" && mkdir -p "$cuda/bin" "$cuda/include" "$cuda/lib64"
cp -r "$site/cuda_nvcc/bin/." "$cuda/bin/"
[ -d "$site/cuda_nvcc/nvvm" ] && cp -r "$site/cuda_nvcc/nvvm" "$cuda/"
for d in "$site"/*/include; do cp -rn "$d/." "$cuda/include/" 2>/dev/null || true; done
for d in "$site"/*/lib; do
    for f in "$d"/*.so*; do
        [ -e "$f" ] || continue
        ln -sf "$f" "$cuda/lib64/$(basename "$f")"
        base="$(basename "$f" | sed -E 's/\.so\..*/.so/')"
        [ -e "$cuda/lib64/$base" ] || ln -sf "$f" "$cuda/lib64/$base"
    done
done
# The driver library is not on PyPI: link against a stub exporting the driver API symbols
# (the real libcuda.so.1 of the NVIDIA driver is loaded at run time, by soname).
syms="$(grep -rhoE '\bcu[A-Z][A-Za-z0-9_]*(_v[0-9]+)?\b' "$cuda/include/cuda.h" | sort -u)"
{
    for s in $syms; do echo "int $s(void) { return 999; }"; done
} > "$cuda/lib64/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib64/libcuda.so" "$cuda/lib64/cuda_stub.c"
export CUDA_ROOT="$cuda" CUDA_PATH="$cuda" CUDA_TOOLKIT_ROOT_DIR="$cuda"
export PATH="$cuda/bin:$PATH"
export LIBRARY_PATH="$cuda/lib64:${LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
nvcc --version | tail -2
# A self-contained binary (static libstd: the GPU machine has no Rust toolchain), hence no
# -Cprefer-dynamic here.
cargo build -p mixbt --bin mixbt --features "$features" --target-dir "$root/target/cuda" --config 'build.rustflags=[]'

bin="$root/target/cuda/x86_64-unknown-linux-gnu/debug/mixbt"
echo "built $bin (features: $features, PTX for sm_$CUDA_COMPUTE_CAP)"
echo "needs at run time: libcuda.so.1 (driver), libcublas/libcublasLt/libcurand/libnvrtc (CUDA 12)"
