#!/bin/bash
# Dev-only: prepares, on this (GPU-less) machine, what scripts/gpu_device_check.sh needs on the
# device machine, in the git-ignored folders the device call carries:
#   .gl/      Debian's Vulkan/GL loader .debs (the device machine has the NVIDIA driver, not
#             the loaders)
#   .devbin/  longformer-gpu.gz, the `longformer` binary with --features vulkan,autotune,
#             and anchor_bench.py (../shared/tools: HF, SDPA and FlexAttention on the same
#             shapes, from the device machine's PyTorch)
# Then, through the workplace's device tool: `run` with carry [".gl", ".devbin"] and the command
# `bash scripts/gpu_device_check.sh`, and `give_back`. The build has its own target directory
# (GPU_KIT_TARGET_DIR): in the tests' one, its `longformer` binary (other features) would
# replace theirs. About 30 minutes cold on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${GPU_KIT_TARGET_DIR:-$HOME/.cache/longformer-burn/target-gpu}"

if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

# The commit of the checkout, and whether it has uncommitted changes.
checkout() { echo "$(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"; }
started=$(checkout)
cargo build -p longformer-train --bin longformer --features vulkan,autotune
mkdir -p .devbin
gzip -c "$CARGO_TARGET_DIR/debug/longformer" > .devbin/longformer-gpu.gz
anchor=../shared/tools/anchor_bench.py
if [ -f "$anchor" ]; then cp "$anchor" .devbin/; else echo "warning: no $anchor" >&2; fi
# The device call carries at most 64 MiB in all.
du -ch .gl .devbin | tail -1
now=$(checkout)
# Cargo reads each crate's sources when it compiles it: a checkout that moved during the build
# may have given the binary sources of both commits.
if [ "$started" = "$now" ]; then echo "built at $now"; else echo "built from $started to $now: rebuild"; fi \
  | tee .devbin/BUILT
