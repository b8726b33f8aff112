#!/bin/bash
# Dev-only: runs scripts/gpu_device_check.sh here, on the software GPU, before it spends device
# time: every step of the real check at toy shapes (one layer of width 64, 128 and 256 tokens),
# with the test build's `longformer` standing in for the GPU kit's (it has no vulkan feature,
# so the vulkan attempt fails and the check's fallback to wgpu runs; bf16/f16 are refused by
# the software GPU). A stub stands in for nvidia-smi; the NVIDIA loader setup is skipped.
# Output in /tmp/gpu-check-dry/out: the same files the device call brings back.
#   bash scripts/gpu_device_check_dry_run.sh   (under a minute on 2 cores)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin="${CARGO_TARGET_DIR:-$HOME/.cache/longformer-burn/target}/debug/longformer"
[ -x "$bin" ] || { echo "no $bin: run cargo test --workspace (or cargo build) first" >&2; exit 1; }
dry=/tmp/gpu-check-dry
rm -rf "$dry" && mkdir -p "$dry/.devbin" "$dry/out" "$dry/bin"
gzip -c "$bin" > "$dry/.devbin/longformer-gpu.gz"
cp "$repo/../shared/tools/anchor_bench.py" "$dry/.devbin/" 2>/dev/null \
  || printf 'print("no anchor_bench.py here")\n' > "$dry/.devbin/anchor_bench.py"
printf '#!/bin/sh\nwhile true; do echo 0; sleep 0.1; done\n' > "$dry/bin/nvidia-smi"
chmod +x "$dry/bin/nvidia-smi"
shape='--layers 1 --hidden 64 --heads 2 --vocab 1000 --window 32 --global 4'
sed -e 's/^for f in .gl.*ldconfig$/: the loader setup is skipped in the dry run/' \
    -e 's/^export VK_DRIVER_FILES=.*$/: no NVIDIA loaders in the dry run/' \
    -e 's/4096,16384/128,256/g' -e 's/--seq 4096 /--seq 128 /g' -e 's/--seq 1024,2048/--seq 128,256/' \
    -e 's/--seq 1024$/--seq 256/' \
    -e "s/B=\"--backend \$BK --dropout 0\"/B=\"--backend \$BK --dropout 0 $shape\"/g" \
    "$repo/scripts/gpu_device_check.sh" > "$dry/check.sh"
cd "$dry"
PATH="$dry/bin:$PATH" OUT="$dry/out" VK_ICD_FILENAMES=/nonexistent.json bash check.sh 2>&1 \
  | grep -v '^hf-\|^roberta\|^flex-attn\|^sdpa' | cut -c1-160
ls "$dry/out"
