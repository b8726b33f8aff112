#!/bin/bash
# Dev-only: the GPU check of the fused kernel, as run through the workplace's device tool on an
# H200 (see docs/gpu-kernel-notes.md), and of half precision (`--dtype`). It runs on the device
# machine from the repository root.
#
# Prepare here with scripts/prepare_gpu_kit.sh (git-ignored folders, named in the device
# call's `carry`):
#   .gl/      Debian's GL/Vulkan loader .debs (the device tool's README says how to fetch them)
#   .devbin/  longformer-gpu.gz: `cargo build -p longformer-train --bin longformer
#             --features vulkan,autotune`, gzipped; anchor_bench.py from ../shared/tools
# Then: run `bash scripts/gpu_device_check.sh` with carry [".gl", ".devbin"]. After editing this
# script, scripts/gpu_device_check_dry_run.sh runs every step here at toy shapes first.
# The anchors run first (the ratios need them from the same call), then ours in order of
# importance, each skipped when less than a minute is left before DEADLINE seconds (the device
# call's limit is 600). Each `ours` line is one process: its first step autotunes every shape
# (35-50 s on an H200; longer with fusion's kernels), hence several lengths per process. The
# attention-core run prints the fused-vs-band-path difference next to its timing: it checks the
# kernel on this GPU. The `prof` runs time each kernel on the device (CubeCL's profiler) for one
# attention core, one base training step and, last, one inference forward: prof-core.txt.gz,
# prof-train4k.txt.gz, prof-fwd4k.txt.gz (read them with scripts/profile_summary.py); they also
# keep the autotuner's results ("Fastest result", "Autotune[i]" lines), among them the launch
# shape our kernels' tuner picked on this GPU.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
gunzip -c .devbin/longformer-gpu.gz > /tmp/lf; chmod +x /tmp/lf
# Every autotuner result (Burn's kernels, and the launch shape of ours: "standard" or
# "blockB-tileT" per BandKernelKey) into autotune.log, through CubeCL's config file in the
# working directory.
printf '[autotune.logger]\nfile = "/tmp/autotune.log"\nlevel = "minimal"\n' > cubecl.toml
LOG=$OUT/ours.log
START=$(date +%s); DEADLINE=${DEADLINE:-570}; rc=0
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
cp .devbin/anchor_bench.py /tmp/; (cd /tmp; PYTHONUNBUFFERED=1 timeout 150 python3 anchor_bench.py 2>&1 | grep -v -i warn | tee $OUT/anchor.log)
ours() { tag=$1; shift
  t=$(left); if [ $t -lt 60 ]; then echo "OURS $tag skipped: ${t} s left" | tee -a $LOG; return; fi
  tmo=${TMO:-200}; [ $t -lt $tmo ] && tmo=$t
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > /tmp/smi.txt & sp=$!
  s=$(date +%s%N)
  timeout $tmo /tmp/lf bench "$@" >> $LOG 2>&1; rc=$?
  e=$(( ($(date +%s%N)-s)/1000000 ))
  kill $sp; peak=$(sort -n /tmp/smi.txt | tail -1)
  echo "OURS $tag rc=$rc wall_ms=$e smi_peak_mib=$peak" | tee -a $LOG
  grep '^{' $LOG | tail -2 | cut -c1-150
}
BK=vulkan; B="--backend $BK --dropout 0"
# Where the time goes: CubeCL's profiler times every kernel of one step alone
# (device-synchronized, so the step itself is slower); the compiled sources it also logs are
# dropped, the per-kernel lines and summary tables kept (prof-*.txt.gz).
prof() { tag=$1; shift
  t=$(left); if [ $t -lt 90 ]; then echo "PROF $tag skipped: ${t} s left" | tee -a $LOG; return; fi
  CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/prof.log timeout $((t - 20)) /tmp/lf bench "$@" >> $LOG 2>&1
  echo "PROF $tag rc=$?" | tee -a $LOG
  awk '/\[START_KERNEL_COMPILATION\]/{c=1} /\[END_KERNEL_COMPILATION\]/{c=0; next} !c && /^(\||Fastest result|Autotune\[)/' /tmp/prof.log \
    | sed 's/  */ /g' | gzip > $OUT/prof-$tag.txt.gz
  rm -f /tmp/prof.log
}
# The attention core first: its fused-vs-band-path difference checks the kernel on this GPU.
ours v-core $B --part attention --seq 4096,16384 --repeats 10
if [ $rc -ne 0 ]; then echo "VULKAN FAILED: falling back to wgpu"; tail -20 $LOG; BK=wgpu; B="--backend $BK --dropout 0"; ours w-core $B --part attention --seq 4096,16384 --repeats 10; fi
# Gradients on this GPU against flex on its CPU, same weights (attention kernels forward and
# backward, the embeddings' row sums, LayerNorm): a small model at base head width (64).
ours v-gradcheck --backend $BK --dropout 0.1 --gradient-check --layers 2 --hidden 256 --heads 4 \
  --vocab 1000 --window 128 --global 16 --seq 1024,2048
# ... and with 64 global tokens, whose rows take the fused op in chunks of 256 keys (v1.17)
# where 16 take the folded Burn ops.
ours v-gradcheck-g64 --backend $BK --dropout 0.1 --gradient-check --layers 2 --hidden 256 \
  --heads 4 --vocab 1000 --window 128 --global 64 --seq 1024
grep 'gradients on\|differs from' $LOG | tail -4
# Our three kernels' own device times (the host-timed core numbers of v1 were not credible).
prof core $B --part attention --mode train --seq 4096,16384 --repeats 1
# The targets: the f32 training step, then half precision (the attention core stays f32). On
# Vulkan, f16 is the half type with arithmetic (bf16 at most storage: see gpu-kernel-notes v1.8).
ours v-train $B --seq 4096,16384 --repeats 2 --mode train
ours v-train-f16 $B --seq 4096,16384 --repeats 2 --mode train --dtype f16
prof train4k $B --seq 4096 --repeats 1 --mode train
ours v-coretrain $B --part attention --mode train --seq 4096,16384 --repeats 10
# Host overhead: a step is ~2,800 launches, submitted 32 at a time by default; 128 per submit.
CUBECL_WGPU_MAX_TASKS=128 ours v-train4k-tasks128 $B --seq 4096 --repeats 2 --mode train
# Split-K weight gradients (v1.15): the projections' `xᵀ · dy` as 4 products of n/4 rows and a
# sum, against v-train's 4096 step (off by default until this says it pays).
LONGFORMER_SPLIT_K=4 ours v-train4k-splitk4 $B --seq 4096 --repeats 2 --mode train
ours v-fwd $B --seq 4096,16384 --repeats 3
# Activation checkpointing (v1.7): memory and time of the training step with each layer
# recomputed in the backward pass (the smi peak is the memory to compare with v-train's).
ours v-train-ckpt $B --seq 4096,16384 --repeats 2 --mode train --gradient-checkpointing
ours v-fwd4k-f16 $B --seq 4096 --repeats 3 --dtype f16
# v1's inference forward (81.5 ms at 4096) took twice its training forward (40 ms): per-kernel
# times of one inference forward say which kernels differ.
prof fwd4k $B --seq 4096 --repeats 2
# bf16 on this device: expected to be refused ("cannot compute in BF16") within seconds.
ours v-fwd4k-bf16 $B --seq 4096 --repeats 1 --dtype bf16
grep -i "error\|panick" $LOG | head -5
grep "forward .* ms" $LOG | tail -30 > $OUT/phases.txt
gzip -c /tmp/autotune.log > $OUT/autotune.log.gz 2>/dev/null
