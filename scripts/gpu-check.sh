#!/usr/bin/env bash
# The GPU checks in one command, for the day a GPU machine is lent:
#   (a) parity: one Mixed BT step on the device and on the CPU from the same weights, batch,
#       permutation and α: loss components and every gradient compared (`mixbt bench parity`);
#   (b) speed: `mixbt bench train` at batch 256 on the device, next to PyTorch on the same device
#       when MIXBT_PYTHON (or python3) has torch with CUDA;
#   (c) learning: a few hundred CIFAR-10 steps on the device with k-NN (`cifar10-cpu` preset);
#   (d) NCCL: a data-parallel job of one rank (WORLD_SIZE=1: NCCL's id exchange, communicator and
#       a first all-reduce, then 5 steps), and of two ranks when the machine has two GPUs;
# then one table (markdown) with the GPU's name.
#
#   scripts/gpu-check.sh --data <cifar10 image folder: train/<class>, test/<class>> \
#       [--bin target/cuda/x86_64-unknown-linux-gnu/debug/mixbt] [--device cuda:0] [--steps 300]
#       [--batch 256] [--width 1] [-- extra pretrain flags]
#
# `--device cpu --data builtin` runs the same script on the CPU against itself (the tests do, with
# a tiny width and batch, so the script cannot rot). Exit status: non-zero when a step fails or
# the parity check does not hold.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/cuda/x86_64-unknown-linux-gnu/debug/mixbt"
device="cuda:0"
data=""
steps=300
batch=256
width=1
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --data) data="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --width) width="$2"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "gpu-check: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[ -x "$bin" ] || { echo "gpu-check: no mixbt binary at $bin (build it with scripts/build-cuda.sh, or pass --bin)" >&2; exit 2; }
[ -n "$data" ] || { echo "gpu-check: give --data <CIFAR-10 image folder> (or --data builtin)" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)"
[ -n "$gpu" ] || gpu="$device"

echo "== (a) parity, $device against cpu" >&2
parity_rc=0
"$bin" bench parity --device "$device" --against cpu > "$out/parity.txt" || parity_rc=$?
cat "$out/parity.txt" >&2

echo "== (b) training step and embedding at batch $batch on $device" >&2
"$bin" bench train --device "$device" --batches "$batch" --embed-batch "$batch" --width "$width" --rounds 2 --steps 5 --warmup 2 > "$out/train.txt"
cat "$out/train.txt" >&2

echo "== (c) $steps pre-training steps on $device, then k-NN" >&2
if [ "$data" = builtin ]; then
    preset=(--preset quickstart)
else
    preset=(--preset cifar10-cpu --data-dir "$data")
fi
"$bin" pretrain "${preset[@]}" --device "$device" --max-steps "$steps" --out "$out/run" --no-progress ${extra[@]+"${extra[@]}"} > "$out/pretrain.txt"

nccl="not run (CPU device)"
if [ "$device" != cpu ]; then
    echo "== (d) NCCL data-parallel job, world size 1 on $device" >&2
    nccl="world size 1: failed"
    if WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29533 \
        "$bin" pretrain --preset quickstart --device cuda --max-steps 5 --out "$out/nccl1" --no-progress --skip-random-init-knn > "$out/nccl1.txt"; then
        nccl="world size 1: ok"
    fi
    if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then
        echo "== (d) NCCL data-parallel job, 2 ranks on 2 GPUs" >&2
        for r in 0 1; do
            WORLD_SIZE=2 RANK=$r LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=29534 \
                "$bin" pretrain --preset quickstart --device cuda --max-steps 20 --out "$out/nccl2" --no-progress --skip-random-init-knn > "$out/nccl2-$r.txt" &
        done
        if wait; then nccl="$nccl; 2 ranks: ok ($(grep -o 'k-NN top-1 [0-9.]*%' "$out/nccl2-0.txt"))"; else nccl="$nccl; 2 ranks: failed"; fi
    fi
fi

val() { grep -o "^$1=[^ ]*" "$2" | head -1 | cut -d= -f2; }
row() { awk -v c="$1" '$1 == c { printf "%s img/s (PyTorch %s, ratio %s)", $3, $4, $5 }' "$out/train.txt"; }
summary="$out/run/summary.json"
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$summary" "$1"; }
echo
echo "GPU check on $gpu ($device), $(date -u +%Y-%m-%d), kernel path of the CPU side: $(val kernel "$out/train.txt")"
echo
echo "| check | result |"
echo "|---|---|"
echo "| (a) parity with the CPU: loss, largest gradient difference | rel $(val parity_loss_rel "$out/parity.txt"), $(val parity_max_rel_grad "$out/parity.txt") (ok: $(val parity_ok "$out/parity.txt")) |"
echo "| (b) training step, batch $batch | $(row train) |"
echo "| (b) embedding, batch $batch | $(row embed) |"
echo "| (c) $steps steps: k-NN top-1 (random init) | $(json knn_top1)% ($(json knn_top1_random_init)%) |"
echo "| (c) wall time, training images/s | $(json wall_seconds) s, $(json images_per_s) |"
echo "| (d) NCCL data-parallel job | $nccl |"
exit "$parity_rc"
