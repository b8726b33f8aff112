#!/usr/bin/env python3
"""Randomized parity sweep: random tiny Longformers and inputs, HF transformers against
`longformer encode` on each backend (dev-only; CI never runs this, the fixtures it finds
become committed cases of gen_fixtures.py).

Each case draws a config (heads, head width, layers, per-layer windows, positions, token
types, dilation-free) and a batch (ragged lengths, right or left padding, masked-out tokens
inside a row, global tokens anywhere, on padding too, or none, or all), saves the model in HF
layout, runs HF's LongformerModel and `longformer encode --input` on every backend asked for,
and compares `last_hidden_state` at every position. With --heads, each case runs one of the
five task heads instead (`encode --head`), half the time with the head's default global
attention.

    pip install torch transformers safetensors
    cargo build -p longformer-train --bin longformer
    python scripts/parity_sweep.py --cases 40 --backends flex,ndarray,wgpu
    python scripts/parity_sweep.py --heads --cases 40
    python scripts/parity_sweep.py --long --cases 20       # up to 2,048 tokens, windows to 512
    python scripts/parity_sweep.py --dtype bf16 --backends flex --cases 40
    python scripts/parity_sweep.py --heads --encode-args "--batch-size 1"  # row by row
    python scripts/parity_sweep.py --seed 7 --cases 1 --keep /tmp/case7   # one case, kept

Exit status 1 if any case differs by more than --tol (default 1e-4), printing each failing
case's seed, shapes and where the largest difference sits.
"""
import argparse
import copy
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

import torch
import transformers
# The fixtures' weight perturbation (LayerNorm weights and biases moved off their init).
from gen_fixtures import perturb
from safetensors.torch import load_file, save_file
from transformers import (
    LongformerConfig,
    LongformerForMaskedLM,
    LongformerForMultipleChoice,
    LongformerForQuestionAnswering,
    LongformerForSequenceClassification,
    LongformerForTokenClassification,
    LongformerModel,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PAD, BOS, SEP = 1, 0, 2

# `longformer encode --head` name -> HF model class and output names (None: the base model).
HEADS = {
    None: (None, ["last_hidden_state"]),
    "mlm": (LongformerForMaskedLM, ["logits"]),
    "sequence-classification": (LongformerForSequenceClassification, ["logits"]),
    "question-answering": (LongformerForQuestionAnswering, ["start_logits", "end_logits"]),
    "token-classification": (LongformerForTokenClassification, ["logits"]),
    "multiple-choice": (LongformerForMultipleChoice, ["logits"]),
}
# heads whose default global attention needs `<s> question </s></s> context </s>` rows
SEP_LAYOUT = {"question-answering", "multiple-choice"}


def draw_config(r, long):
    heads = r.choice([1, 2, 3, 4, 6])
    head_dim = r.choice([2, 5, 8, 12, 16] + ([32, 64] if long else []))
    layers = r.randint(1, 2 if long else 3)
    if r.random() < 0.4:
        window = r.choice([128, 200, 256, 512] if long else [4, 6, 8, 10, 16, 32])  # 2 breaks HF
    else:  # HF pads to a multiple of the largest window, which every layer's must divide
        largest = r.choice([64, 128, 256] if long else [4, 8, 12, 16, 32])
        window = [r.choice([w for w in range(4, largest + 1, 2) if largest % w == 0])
                  for _ in range(layers)]
    max_pos = r.choice([1100, 2100] if long else [40, 80, 140])
    return LongformerConfig(
        vocab_size=r.choice([50, 97]), hidden_size=heads * head_dim, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=r.choice([8, 32, 64]), hidden_act="gelu",
        max_position_embeddings=max_pos, type_vocab_size=r.choice([1, 2]),
        layer_norm_eps=r.choice([1e-5, 1e-12]), pad_token_id=PAD, bos_token_id=BOS,
        eos_token_id=SEP, sep_token_id=SEP, attention_window=window, num_labels=r.randint(1, 5),
    )


def draw_batch(r, config, head):
    batch = r.randint(1, 3)
    longest = config.max_position_embeddings - PAD - 1
    shortest = 5 if head in SEP_LAYOUT else 1
    lengths = [r.randint(shortest, max(shortest, min(longest, r.choice([6, 20, 60, 300, longest]))))
               for _ in range(batch)]
    L = max(lengths)
    left = r.random() < 0.25
    ids = torch.full((batch, L), PAD, dtype=torch.long)
    mask = torch.zeros((batch, L), dtype=torch.long)
    glob = torch.zeros((batch, L), dtype=torch.long)
    types = torch.zeros((batch, L), dtype=torch.long)
    for b, n in enumerate(lengths):
        span = range(L - n, L) if left else range(n)
        for p in span:
            ids[b, p] = r.randrange(3, config.vocab_size)
            mask[b, p] = 1
            types[b, p] = r.randrange(config.type_vocab_size)
        ids[b, span[0]] = BOS
        if n > 1:
            ids[b, span[-1]] = SEP
        if head in SEP_LAYOUT:  # exactly three separators: after the question, twice
            q = r.randint(1, n - 4)
            ids[b, span[q + 1]] = ids[b, span[q + 2]] = SEP
        # a few masked-out tokens inside the row (HF masks them as keys; they stay queries)
        if r.random() < 0.2 and n > 3:
            for p in r.sample(list(span[1:-1]), k=max(1, (n - 2) // 5)):
                mask[b, p] = 0
        style = r.choice(["none", "first", "some", "many", "all", "anywhere"])
        if style == "first":
            glob[b, span[0]] = 1
        elif style == "some":
            for p in r.sample(list(span), k=min(n, r.randint(1, 4))):
                glob[b, p] = 1
        elif style == "many":
            for p in span[:: r.randint(2, 3)]:
                glob[b, p] = 1
        elif style == "all":
            for p in span:
                glob[b, p] = 1
        elif style == "anywhere":  # padding positions too: HF ignores global where mask is 0
            for p in r.sample(range(L), k=r.randint(1, L)):
                glob[b, p] = 1
    return ids, mask, glob, types


def run_case(seed, backends, binary, keep, tol, log, long, heads, dtype, extra):
    r = random.Random(seed)
    config = draw_config(r, long)
    head = r.choice(list(HEADS)) if heads else None
    cls, names = HEADS[head]
    if head == "question-answering":
        config.num_labels = 2  # start and end
    torch.manual_seed(seed)
    model = perturb(cls(config) if cls else LongformerModel(config, add_pooling_layer=False), seed)
    ids, mask, glob, types = draw_batch(r, config, head)
    default_global = head is not None and r.random() < 0.5  # the head's own, as HF computes it
    choices = ids.shape[0] if head == "multiple-choice" else None
    feed = dict(input_ids=ids, attention_mask=mask, token_type_ids=types,
                global_attention_mask=None if default_global else glob)
    if choices:  # HF's multiple choice takes [examples, choices, seq]: one example here
        feed = {k: v[None] if v is not None else None for k, v in feed.items()}
    try:
        with torch.no_grad():
            res = model(**feed)
        want = {name: getattr(res, name).float().contiguous() for name in names}
        if dtype != "f32":  # HF in the half dtype sets the tolerance: its own distance from f32
            half = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
            with torch.no_grad():
                res = copy.deepcopy(model).to(half)(**feed)
            hf_half = {name: getattr(res, name).float() for name in names}
            hf_distance = max((hf_half[n] - want[n]).abs().max().item() for n in names)
            if not math.isfinite(hf_distance):
                raise OverflowError(f"HF's {dtype} run is not finite")
            # a few units of the dtype's rounding at the outputs' scale, for outputs so small
            # (one logit) that HF's distance happens to be tiny
            scale = max(want[n].abs().max().item() for n in names)
            tol = max(tol, 1.5 * hf_distance, 4 * torch.finfo(half).eps * scale)
    except Exception as e:  # HF's own limits (a window of 2 breaks its chunking): no oracle
        print(f"seed {seed}: skipped, HF failed: {type(e).__name__}: {str(e)[:120]}", file=log)
        return None
    d = keep or tempfile.mkdtemp(prefix=f"sweep{seed}-")
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    inputs = {"input_ids": ids.tolist(), "attention_mask": mask.tolist(),
              "token_type_ids": types.tolist()}
    if not default_global:
        inputs["global_attention_mask"] = glob.tolist()
    with open(os.path.join(d, "ids.json"), "w") as f:
        json.dump(inputs, f)
    save_file(want, os.path.join(d, "expected.safetensors"))
    shape = (f"seed {seed}: {head or 'base'} heads {config.num_attention_heads}"
             f"x{config.hidden_size // config.num_attention_heads} layers {config.num_hidden_layers}"
             f" window {config.attention_window} ids {tuple(ids.shape)} real {mask.sum(1).tolist()}"
             f" global {'default' if default_global else glob.sum(1).tolist()}")
    failures = []
    for backend in backends:
        out = os.path.join(d, f"out-{backend}.safetensors")
        env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent.json")
        cmd = [binary, "encode", "--backend", backend, "--model", d, "--input",
               os.path.join(d, "ids.json"), "--output", out]
        if head:
            cmd += ["--head", head]
        if dtype != "f32":
            cmd += ["--dtype", dtype]
        cmd += extra
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            failures.append(f"{backend}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
            continue
        got_all = load_file(out)
        for name, expected in want.items():
            got = got_all.get(name)
            if got is None or got.shape != expected.shape:
                failures.append(f"{backend}: {name} shape {None if got is None else tuple(got.shape)}"
                                f" != {tuple(expected.shape)}")
                continue
            diff = (got - expected).abs()
            worst = diff.max().item()
            if not worst <= tol:
                at = [int(i) for i in torch.nonzero(diff == diff.max())[0]]
                failures.append(f"{backend}: {name} max diff {worst:.3g} at {at}")
    if dtype != "f32":
        shape += f" {dtype} tol {tol:.2g}"
    return report_case(log, shape, failures, keep, d)


def report_case(log, line, failures, keep, d):
    """Prints a case's line and failures, and removes its directory unless it is kept or the
    case failed; whether the case passed."""
    print(line + ("  ok" if not failures else "  FAIL"), file=log, flush=True)
    for f in failures:
        print("    " + f, file=log, flush=True)
    if not keep and not failures:
        shutil.rmtree(d)
    elif failures:
        print(f"    kept in {d}", file=log, flush=True)
    return not failures


def sweep_arguments(description, binary):
    """The sweeps' command line: cases, seed, backends, the binary under test (a path under the
    target directory), a directory to keep one case in; transformers quiet."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="first case's seed; case i uses seed + i")
    ap.add_argument("--backends", default="flex,ndarray,wgpu")
    ap.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", *binary))
    ap.add_argument("--keep", help="directory for the case's files (one case)")
    return ap


def main():
    ap = sweep_arguments(__doc__, ["longformer"])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--heads", action="store_true",
                    help="each case runs one of HF's five task heads (or the base model), with "
                         "the given global attention or, half the time, the head's default")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32",
                    help="run ours in this dtype (`encode --dtype`) against HF in f32; the "
                         "tolerance becomes 1.5x HF's own distance between its runs in this dtype "
                         "and in f32, or 4 units of the dtype's rounding at the outputs' largest "
                         "magnitude, whichever is larger")
    ap.add_argument("--encode-args", default="",
                    help="more flags for `longformer encode`, e.g. \"--batch-size 1\"")
    ap.add_argument("--long", action="store_true",
                    help="sequences up to 2,048 tokens, windows of 64-512, heads up to 64 wide")
    args = ap.parse_args()
    if args.keep and args.cases != 1:
        ap.error("--keep takes one case (--cases 1)")
    backends = args.backends.split(",")
    results = [run_case(args.seed + i, backends, args.binary, args.keep, args.tol, sys.stdout,
                        args.long, args.heads, args.dtype, args.encode_args.split())
               for i in range(args.cases)]
    ok, failed = results.count(True), results.count(False)
    within = f"{args.tol}" if args.dtype == "f32" else f"each case's {args.dtype} tolerance"
    print(f"{ok} cases agree within {within}, {failed} differ, "
          f"{results.count(None)} skipped (HF failed)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
