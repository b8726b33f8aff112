"""Randomized gradient parity sweep: random tiny Longformers and batches, the gradient of
`sum(last_hidden_state * cotangent)` with respect to every parameter, HF transformers (PyTorch)
against ours on each backend (dev-only; CI never runs this, the cases it finds become committed
fixtures).

Each case draws a model and a batch as `parity_sweep.py` does (heads 1-6 of width 2-64, 1-3
layers with per-layer windows, ragged rows, left padding, masked-out tokens inside rows, global
tokens in any layout, token types), with dropout 0, and a random cotangent: over every
position, or (half the cases) over real tokens only. PyTorch's gradients are saved under HF's
parameter names; `cargo run --example grad_case` (tests/examples/grad_case.rs) computes ours
on each backend, on wgpu with the fused kernel and with the band path (`--kernel reference`),
and on flex also with activation checkpointing.

    pip install torch transformers safetensors
    cargo build -p longformer-tests --example grad_case
    python scripts/grad_sweep.py --cases 40 --backends flex,ndarray,wgpu
    python scripts/grad_sweep.py --heads --cases 40    # the five task heads too
    python scripts/grad_sweep.py --losses --cases 40   # the heads' losses for random labels
    python scripts/grad_sweep.py --long --cases 10     # up to 2,048 tokens, windows to 512
    python scripts/grad_sweep.py --seed 7 --cases 1 --keep /tmp/grad7   # one case, kept

Ours are measured against HF run in float64 (the truth), and a gradient tensor agrees when
`max|ours - truth| <= tol * max(max|truth|, 1e-4 * the model's largest gradient)` (tol 1e-3, the
issue's relative tolerance; the floor keeps gradients that are zero in exact arithmetic, as the
key biases', from comparing round-off with round-off), or when it is within 10x HF float32's
own distance from the truth (gradients that are mostly round-off in float32, as all those under
a LayerNorm over 2 features, whose output hardly depends on its input), or within 64 float32
rounding units of the model's largest gradient (a gradient that is zero in exact arithmetic, as
a multiple-choice classifier's bias under its loss); the outputs must agree with HF float32
within 1e-4. The `worst` of a case is its largest error in units of what is
allowed, times tol.

With --heads each case is one of the five task heads (or the base model): the loss is the sum of
its outputs (`logits`, or `start_logits` and `end_logits`) times random cotangents, and every
parameter of the head model is compared, the tied masked-LM decoder's share of the word
embeddings and the multiple-choice pooler included. Exit status 1 if any case differs, naming the case's seed, its
shapes and the worst tensors.
"""

import copy
import os
import random
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file
from transformers import LongformerModel

from gen_fixtures import perturb
from parity_sweep import HEADS, draw_batch, draw_config, report_case, sweep_arguments


# How many times HF float32's own error (against float64) a gradient may be off
NOISE_FACTOR = 10
# How many float32 units of rounding, at the model's largest gradient, any gradient may be off
ROUNDOFF, F32_EPS = 64, 2.0 ** -23


def cotangent_name(output):
    return "cotangent" if output == "last_hidden_state" else f"cotangent_{output}"


def draw_labels(r, config, head, ids, mask):
    """Labels for a head's loss, as HF takes them (`labels=`, or the positions), covering HF's
    rules: -100 ignored, answer positions outside the sequence, the three problem types of
    sequence classification (set on the config)."""
    batch, seq = ids.shape
    if head in ("mlm", "token-classification"):
        classes = config.vocab_size if head == "mlm" else config.num_labels
        labels = torch.tensor([[r.randrange(classes) for _ in range(seq)] for _ in range(batch)])
        share = r.choice([0.0, 0.5, 0.9])  # the part of the real tokens ignored
        ignored = torch.tensor([[r.random() < share for _ in range(seq)] for _ in range(batch)])
        labels[ignored | (mask == 0)] = -100
        return {"labels": labels}
    if head == "question-answering":
        draw = lambda: torch.tensor([r.randint(-3, seq + 3) for _ in range(batch)])
        return {"start_positions": draw(), "end_positions": draw()}
    if head == "multiple-choice":
        return {"labels": torch.tensor([r.randrange(batch)])}
    # sequence classification (single-label with one label is refused: its loss is always 0)
    problems = ["single_label_classification", "regression", "multi_label_classification"]
    problem = r.choice(problems if config.num_labels > 1 else problems[1:])
    config.problem_type = problem
    if problem == "single_label_classification":
        labels = torch.tensor([r.randrange(config.num_labels) if r.random() < 0.8 else -100
                               for _ in range(batch)])
        return {"labels": labels}
    if problem == "regression":
        return {"regression_targets": torch.randn(batch, config.num_labels)}
    return {"multi_label_targets": torch.tensor(
        [[r.choice([0.0, 1.0, 0.3]) for _ in range(config.num_labels)] for _ in range(batch)])}


def run_case(seed, runs, binary, keep, tol, long, heads, losses, log):
    r = random.Random(seed)
    config = draw_config(r, long)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    head = r.choice([h for h in HEADS if h or not losses]) if heads or losses else None
    cls, names = HEADS[head]
    if head == "question-answering":
        config.num_labels = 2  # start and end
    if head == "mlm" and r.random() < 0.4:  # the decoder's own weights, not the embeddings'
        config.tie_word_embeddings = False
    torch.manual_seed(seed)
    model = perturb(cls(config) if cls else LongformerModel(config, add_pooling_layer=False), seed)
    ids, mask, glob, types = draw_batch(r, config, head)
    feed = dict(input_ids=ids, attention_mask=mask, global_attention_mask=glob, token_type_ids=types)
    if head == "multiple-choice":  # HF takes [examples, choices, seq]: one example here
        feed = {k: v[None] for k, v in feed.items()}
    real_only = r.random() < 0.5
    g = torch.Generator().manual_seed(seed)
    labels = draw_labels(r, config, head, ids, mask) if losses else {}
    if losses:
        names = ["loss"]

    def run_hf(m, cotangents=None):
        hf_labels = {"regression_targets": "labels", "multi_label_targets": "labels"}
        dtype = next(m.parameters()).dtype
        res = m(**feed, **{hf_labels.get(k, k): v.to(dtype) if v.is_floating_point() else v
                           for k, v in labels.items()})
        outs = {name: getattr(res, name).reshape(-1) if name == "loss" else getattr(res, name)
                for name in names}
        if cotangents is None:
            cotangents = {name: torch.randn(out.shape, generator=g) for name, out in outs.items()}
            if real_only and not losses and head in (None, "mlm", "token-classification",
                                                     "question-answering"):
                for name, out in outs.items():  # per-token outputs: real tokens only
                    m_ = mask.float().reshape(mask.shape + (1,) * (out.dim() - 2))
                    cotangents[name] = cotangents[name] * m_
        sum((outs[n] * cotangents[n].to(outs[n].dtype)).sum() for n in names).backward()
        return outs, cotangents

    try:
        outs, cotangents = run_hf(model)
    except Exception as e:  # HF's own limits (a window of 2 breaks its chunking): no oracle
        print(f"seed {seed}: skipped, HF failed: {type(e).__name__}: {str(e)[:120]}", file=log)
        return None
    want = {name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().contiguous()
            for name, p in model.named_parameters()}
    # HF in float64: the truth ours is measured against, and HF float32's own distance from it,
    # the yardstick of gradients that are mostly round-off (a LayerNorm over 2 or 4 features)
    model64 = copy.deepcopy(model).double()
    model64.zero_grad()
    run_hf(model64, cotangents)
    truth = {name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach()
             for name, p in model64.named_parameters()}
    for name, g in truth.items():  # HF float64 may overflow where float32 does not (masking
        if not torch.isfinite(g).all():  # with finfo.min twice): float32 is the truth there
            truth[name] = want[name].double()
    hf_noise = {name: (want[name].double() - truth[name]).abs().max().item() for name in want}
    scale = max(g.abs().max().item() for g in want.values())
    d = keep or tempfile.mkdtemp(prefix=f"grad{seed}-")
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    case = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob,
            "token_type_ids": types}
    case.update({cotangent_name(n): c.contiguous() for n, c in cotangents.items()})
    case.update({k: v.contiguous() for k, v in labels.items()})
    save_file(case, os.path.join(d, "case.safetensors"))
    save_file(want, os.path.join(d, "hf_grads.safetensors"))
    shape = (f"seed {seed}: {head or 'base'}{' loss ' + ','.join(labels) if losses else ''}{' untied' if not config.tie_word_embeddings else ''} heads {config.num_attention_heads}"
             f"x{config.hidden_size // config.num_attention_heads} layers {config.num_hidden_layers}"
             f" window {config.attention_window} ids {tuple(ids.shape)} real {mask.sum(1).tolist()}"
             f" global {glob.sum(1).tolist()} cotangent on {'real tokens' if real_only else 'every position'}")
    failures, worst_all = [], 0.0
    for backend, flags in runs:
        env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent.json")
        p = subprocess.run([binary, d, "--backend", backend] + flags
                           + (["--head", head] if head else []),
                           capture_output=True, text=True, env=env)
        label = " ".join([backend] + flags)
        if p.returncode != 0:
            failures.append(f"{label}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
            continue
        got = load_file(p.stdout.strip())
        for name in names:  # a loss without labels is NaN on both sides
            want_out = outs[name].detach().reshape(got[name].shape)
            both_nan = got[name].isnan() & want_out.isnan()
            diff = (got[name] - want_out).abs().masked_fill(both_nan, 0).max().item()
            if not diff <= 1e-4:
                failures.append(f"{label}: {name} differs by {diff:.3g}")
        missing = sorted(set(want) ^ (set(got) - set(names)))
        if missing:
            failures.append(f"{label}: names in one side only: {missing}")
        worst = []
        for name, expected in want.items():
            ours = got.get(name)
            if ours is None or ours.shape != expected.shape:
                continue
            err = (ours.double() - truth[name]).abs().max().item()
            denominator = max(truth[name].abs().max().item(), 1e-4 * scale, 1e-12)
            rel = err / denominator
            # within tol; or within 10x HF float32's own error on this tensor (sums taken in
            # another order differ by a few times each other's round-off); or within float32
            # round-off of the model's gradients (a gradient zero in exact arithmetic, as a
            # multiple-choice bias's, which HF's sum may happen to cancel exactly). A bug, as a
            # padding row's gradient, is off by the gradient itself.
            allowed = max(tol * denominator, NOISE_FACTOR * hf_noise[name],
                          ROUNDOFF * F32_EPS * scale)
            worst.append((err / allowed * tol if err == err else float("inf"), name, err, rel))
        worst.sort(reverse=True)
        worst_all = max([worst_all] + [w[0] for w in worst[:1]])
        bad = [w for w in worst if not w[0] <= tol]
        for score, name, err, rel in bad[:4]:
            failures.append(f"{label}: {name} relative {rel:.3g} (abs {err:.3g}; HF float32's "
                            f"own {hf_noise[name]:.3g})")
    return report_case(log, f"{shape}  worst {worst_all:.2g}", failures, keep, d)


def main():
    ap = sweep_arguments(__doc__, ["examples", "grad_case"])
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--heads", action="store_true",
                    help="each case is one of HF's five task heads (or the base model), the "
                         "loss the sum of its outputs times random cotangents")
    ap.add_argument("--losses", action="store_true",
                    help="each case is a task head and its loss for random labels (HF's "
                         "`labels=`: -100 ignored, answers past the sequence, the problem types "
                         "of sequence classification), the loss's value and gradients compared")
    ap.add_argument("--long", action="store_true",
                    help="sequences up to 2,048 tokens, windows of 64-512, heads up to 64 wide")
    args = ap.parse_args()
    if args.keep and args.cases != 1:
        ap.error("--keep takes one case (--cases 1)")
    runs = []
    for backend in args.backends.split(","):
        runs.append((backend, []))
        if backend == "wgpu":
            runs.append((backend, ["--kernel", "reference"]))
        if backend == "flex":
            runs.append((backend, ["--checkpointed"]))
    results = [run_case(args.seed + i, runs, args.binary, args.keep, args.tol, args.long,
                        args.heads, args.losses, sys.stdout) for i in range(args.cases)]
    ok, failed = results.count(True), results.count(False)
    print(f"{ok} cases agree within {args.tol} (relative), {failed} differ, "
          f"{results.count(None)} skipped (HF failed)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
