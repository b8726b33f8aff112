#!/usr/bin/env python3
"""The HuggingFace side of `cargo xtask bench --compare-hf` (dev-only; CI never runs this).

Times transformers' PyTorch `LongformerModel` (float32 or `--dtype`, random weights, no download) on the shapes
`longformer bench` times, and prints one JSON row per sequence length in the same schema:
{"backend", "mode", "seq", "batch", "median_ms", "tokens_per_s", "peak_bytes", "threads"}.

    pip install torch transformers
    python scripts/bench_hf.py --seq 1024,4096 --threads 2 [--mode fwd|train]

`peak_bytes` is the process's peak resident memory (ru_maxrss), like ours; run one length per
process to measure each length's peak (`--compare-hf` does).
"""
import argparse
import json
import resource
import statistics
import time

import torch
from transformers import LongformerConfig, LongformerModel


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=50265)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--window", type=int, default=512, help="full attention window")
    p.add_argument("--seq", default="4096", help="sequence lengths, comma separated")
    p.add_argument("--global", dest="n_global", type=int, default=64,
                   help="global tokens per row (the first ones)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up")
    p.add_argument("--mode", choices=["fwd", "train"], default="fwd")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32",
                   help="dtype of the weights and activations (model.to(dtype))")
    p.add_argument("--dropout", type=float, default=0.1,
                   help="hidden and attention-probability dropout (train mode)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="train mode: recompute each layer in the backward pass "
                        "(model.activation_checkpointing_enable(), formerly "
                        "gradient_checkpointing_enable())")
    return p.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    seqs = [int(s) for s in args.seq.split(",")]
    config = LongformerConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
        max_position_embeddings=max(seqs) + 2, attention_window=args.window,
        pad_token_id=1, type_vocab_size=1, layer_norm_eps=1e-5,
        hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout,
    )
    model = LongformerModel(config, add_pooling_layer=False)
    model = model.to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype])
    optimizer = None
    if args.mode == "train":
        if args.gradient_checkpointing:
            # transformers 5 renamed it (the old name warns, and goes in v6).
            enable = getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)
            enable()
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-6,
                                      weight_decay=0.01)
    else:
        model.eval()
    for seq in seqs:
        # The same ids and global layout as `longformer bench`.
        ids = torch.tensor([3 + (i * 7919 % min(args.vocab - 3, 50000)) for i in range(args.batch * seq)],
                           dtype=torch.long).reshape(args.batch, seq)
        glob = torch.zeros((args.batch, seq), dtype=torch.long)
        glob[:, : args.n_global] = 1
        times = []
        for i in range(args.repeats + 1):
            start = time.perf_counter()
            if args.mode == "fwd":
                with torch.no_grad():
                    model(input_ids=ids, global_attention_mask=glob)
            else:
                optimizer.zero_grad(set_to_none=True)
                out = model(input_ids=ids, global_attention_mask=glob).last_hidden_state
                out.mean().backward()
                optimizer.step()
            if i > 0:
                times.append((time.perf_counter() - start) * 1e3)
        median = statistics.median(sorted(times))
        print(json.dumps({
            "backend": "hf-pytorch",
            "mode": args.mode,
            "seq": seq,
            "batch": args.batch,
            "median_ms": median,
            "tokens_per_s": args.batch * seq / (median / 1e3),
            "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    main()
