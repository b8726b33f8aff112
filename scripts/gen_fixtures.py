#!/usr/bin/env python3
"""Generate HuggingFace parity fixtures for longformer-burn (dev-only; CI never runs this).

Each case is a tiny random-weight Longformer saved in HF layout under tests/fixtures/<case>/:
config.json, the weights (model.safetensors or pytorch_model.bin, with a key prefix of "",
"longformer." or "roberta."), and expected.safetensors holding the inputs (int64) and HF's
float32 outputs: last_hidden_state, pooler_output (if the model has a pooler) and, when asked,
per-layer attentions (local_{i}: [B, H, L, G + 2w + 1]) and global attentions (global_{i}: [B, H, L, G]),
and, when asked, HF's hidden_states (hidden_state_{i}: [B, L, hidden], i = 0 the embedding output,
then one per layer; HF's padding to a multiple of the window removed).

The wikihop_grad case instead holds a Longformer + WikiHop answer-scoring head (head.safetensors),
a batch of chunks with the head's loss and logits (expected.safetensors), and the gradient of
that loss w.r.t. every encoder parameter and the head weight, under HF names (grads.safetensors).

    pip install torch transformers safetensors
    python scripts/gen_fixtures.py               # rewrites tests/fixtures and assets/tiny-longformer
    python scripts/gen_fixtures.py wikihop_grad  # rewrites only tests/fixtures/wikihop_grad
    python scripts/gen_fixtures.py heads         # only tests/fixtures/head_* (gen_head_fixtures.py)
    python scripts/gen_fixtures.py conversion    # only tests/fixtures/roberta_source
                                                 # (gen_conversion_fixtures.py)
    python scripts/gen_fixtures.py half_precision  # only tests/fixtures/half_precision
    python scripts/gen_fixtures.py hidden_states   # only tests/fixtures/hidden_states
    python scripts/gen_fixtures.py half_checkpoints  # only tests/fixtures/half_checkpoint_*
    python scripts/gen_fixtures.py masked_rows       # only tests/fixtures/masked_rows
    python scripts/gen_fixtures.py padding_grads     # only tests/fixtures/padding_grads*
    python scripts/gen_fixtures.py head_losses       # only tests/fixtures/head_*/losses.safetensors
"""
import copy
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import LongformerConfig, LongformerForMaskedLM, LongformerModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
VOCAB, PAD = 97, 1


def tiny_config(window, layers=2, max_pos=130, vocab=VOCAB):
    return LongformerConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=64, hidden_act="gelu", max_position_embeddings=max_pos,
        type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=PAD, bos_token_id=0, eos_token_id=2,
        attention_window=window, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )


def perturb(model, seed):
    """Random weights, with LayerNorm weights and every bias moved away from their init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))
    return model.eval()


def rows_to_tensors(rows, globals_):
    """Ragged rows (right-padded) or explicit (ids, mask) rows -> padded tensors."""
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    glob = torch.zeros((len(rows), L), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
        for p in globals_[b]:
            glob[b, p] = 1
    return ids, mask, glob


def random_row(g, n):
    body = torch.randint(3, VOCAB, (n - 2,), generator=g).tolist()
    return [0] + body + [2]


def save_case(name, model, ids, mask, glob, prefix="", fmt="safetensors", attentions=False,
              base=None, hidden_states=False):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    base = base if base is not None else model
    base.config.to_json_file(os.path.join(out, "config.json"))
    state = {prefix + k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        # Tied weights (MLM decoder) must be distinct tensors for safetensors.
        save_file({k: v.clone() for k, v in state.items()}, os.path.join(out, "model.safetensors"))
    else:
        torch.save(state, os.path.join(out, "pytorch_model.bin"))
    with torch.no_grad():
        res = base(input_ids=ids, attention_mask=mask, global_attention_mask=glob,
                   output_attentions=attentions, output_hidden_states=hidden_states)
    expected = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob,
                "last_hidden_state": res.last_hidden_state.float()}
    if getattr(res, "pooler_output", None) is not None:
        expected["pooler_output"] = res.pooler_output.float()
    if attentions:
        for i, a in enumerate(res.attentions):
            expected[f"local_{i}"] = a.float().contiguous()
        for i, a in enumerate(res.global_attentions or []):
            expected[f"global_{i}"] = a.float().contiguous()
    if hidden_states:
        for i, h in enumerate(res.hidden_states):
            assert h.shape == res.last_hidden_state.shape, (i, h.shape)
            expected[f"hidden_state_{i}"] = h.float().contiguous()
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(out, "expected.safetensors"))
    print(f"{name}: ids {tuple(ids.shape)}, globals per row {glob.sum(1).tolist()}, {fmt}, prefix {prefix!r}")


def main():
    os.makedirs(ROOT, exist_ok=True)
    g = torch.Generator().manual_seed(0)

    # Ragged batch, right padding, a different number and place of global tokens per row.
    m = perturb(LongformerModel(tiny_config(8)), 1)
    rows = [random_row(g, n) for n in (37, 20, 29)]
    ids, mask, glob = rows_to_tensors(rows, [[0, 5, 36], [0], [3, 4, 10, 28]])
    save_case("ragged_padding", m, ids, mask, glob, attentions=True)

    # Per-layer windows (the shortest layer window does not divide the length), .bin, longformer. prefix.
    m = perturb(LongformerModel(tiny_config([4, 16, 8], layers=3)), 2)
    rows = [random_row(g, n) for n in (45, 33)]
    ids, mask, glob = rows_to_tensors(rows, [[0, 1], [0, 32]])
    save_case("per_layer_windows", m, ids, mask, glob, prefix="longformer.", fmt="bin",
              attentions=True)

    # No global token at all, roberta. prefix (the original allenai release).
    m = perturb(LongformerModel(tiny_config(8)), 3)
    rows = [random_row(g, n) for n in (26, 26)]
    ids, mask, glob = rows_to_tensors(rows, [[], []])
    save_case("no_global", m, ids, mask, glob, prefix="roberta.", attentions=True)

    # Many global tokens, including the last real token; bare keys in a .bin file.
    m = perturb(LongformerModel(tiny_config(6)), 4)
    rows = [random_row(g, n) for n in (24, 19)]
    ids, mask, glob = rows_to_tensors(rows, [list(range(0, 24, 2)) + [23], list(range(0, 19, 3)) + [18]])
    save_case("many_global", m, ids, mask, glob, fmt="bin")

    # Sequences much shorter than the window.
    m = perturb(LongformerModel(tiny_config(32)), 5)
    rows = [random_row(g, n) for n in (7, 4)]
    ids, mask, glob = rows_to_tensors(rows, [[0], [0, 3]])
    save_case("shorter_than_window", m, ids, mask, glob, attentions=True)

    # Left padding: pads first, real tokens last.
    m = perturb(LongformerModel(tiny_config(8)), 6)
    n_real = (30, 18)
    L = max(n_real)
    ids = torch.full((2, L), PAD, dtype=torch.long)
    mask = torch.zeros((2, L), dtype=torch.long)
    glob = torch.zeros((2, L), dtype=torch.long)
    for b, n in enumerate(n_real):
        ids[b, L - n:] = torch.tensor(random_row(g, n))
        mask[b, L - n:] = 1
        glob[b, L - n] = 1
    save_case("left_padding", m, ids, mask, glob)

    # A masked-LM checkpoint: longformer. prefix, lm_head weights, no pooler.
    mlm = perturb(LongformerForMaskedLM(tiny_config(8)), 7)
    rows = [random_row(g, n) for n in (21,)]
    ids, mask, glob = rows_to_tensors(rows, [[0]])
    save_case("mlm_checkpoint", mlm, ids, mask, glob, base=mlm.longformer)


# Marker ids of the wikihop_grad case: [q], [/q], [ent], [/ent].
Q, Q_END, ENT, ENT_END = 93, 94, 95, 96


def wikihop_grad():
    """Gradients of the WikiHop head's loss (longformer-train's WikiHopModel, Combine::Mean).

    Three chunks: 0 and 1 are two chunks of one example (same candidate part, 3 candidates),
    2 is another example (a longer candidate part, 4 candidates). Right padding; padded candidate
    positions point at 0. Chunk logits = answer_score(last_hidden_state[[ent] positions]); an
    example's logits are the mean of its chunks' logits, padded candidates set to -1e9; the loss
    is the mean over examples of the answer's cross-entropy.
    """
    config = tiny_config([4, 8])
    config.hidden_dropout_prob = 0.0
    config.attention_probs_dropout_prob = 0.0
    model = perturb(LongformerModel(config, add_pooling_layer=False), 21)
    head = torch.nn.Linear(config.hidden_size, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(0.3 * torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(22)))

    g = torch.Generator().manual_seed(23)

    def words(n):
        return torch.randint(3, Q, (n,), generator=g).tolist()

    def candidate_part(question_len, candidate_lens):
        part, ents = [0, Q] + words(question_len) + [Q_END], []
        for n in candidate_lens:
            ents.append(len(part))
            part += [ENT] + words(n) + [ENT_END]
        return part, ents

    part_a, ents_a = candidate_part(3, (2, 1, 3))
    part_b, ents_b = candidate_part(2, (1, 2, 1, 2))
    # (example, candidate part, [ent] positions, answer, document tokens)
    chunks = [(0, part_a, ents_a, 2, 20), (0, part_a, ents_a, 2, 9), (1, part_b, ents_b, 1, 13)]
    rows = [part + words(n) + [2] for _, part, _, _, n in chunks]
    ids, mask, glob = rows_to_tensors(rows, [range(len(part)) for _, part, _, _, _ in chunks])
    C = max(len(e) for _, _, e, _, _ in chunks)
    positions = torch.zeros((len(chunks), C), dtype=torch.long)
    cand_mask = torch.zeros((len(chunks), C), dtype=torch.long)
    for b, (_, _, ents, _, _) in enumerate(chunks):
        positions[b, : len(ents)] = torch.tensor(ents)
        cand_mask[b, : len(ents)] = 1
    answers = torch.tensor([a for _, _, _, a, _ in chunks])
    example = torch.tensor([e for e, _, _, _, _ in chunks])

    # Chunk logits, combined by the mean over each example's chunks.
    hidden = model(input_ids=ids, attention_mask=mask, global_attention_mask=glob).last_hidden_state
    ents = hidden.gather(1, positions[:, :, None].expand(-1, -1, hidden.shape[-1]))
    chunk_logits = head(ents).squeeze(-1)
    n_examples = int(example.max()) + 1
    combine = torch.zeros((n_examples, len(chunks)))
    for e in range(n_examples):
        combine[e, example == e] = 1.0 / int((example == e).sum())
    first = torch.tensor([int((example == e).nonzero()[0]) for e in range(n_examples)])
    logits = (combine @ chunk_logits).masked_fill(cand_mask[first] == 0, -1e9)
    log_probs = torch.log_softmax(logits, dim=1)
    loss = -log_probs.gather(1, answers[first][:, None]).mean()
    loss.backward()

    out = os.path.join(ROOT, "wikihop_grad")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    model.config.to_json_file(os.path.join(out, "config.json"))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, "model.safetensors"))
    save_file({"answer_score.weight": head.weight.detach().contiguous()},
              os.path.join(out, "head.safetensors"))
    expected = {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob,
                "candidate_positions": positions, "candidate_mask": cand_mask,
                "answer_index": answers, "example": example,
                "chunk_logits": chunk_logits.detach(), "logits": logits.detach(),
                "loss": loss.detach().reshape(1)}
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(out, "expected.safetensors"))
    grads = {k: p.grad.contiguous() for k, p in model.named_parameters()}
    grads["answer_score.weight"] = head.weight.grad.contiguous()
    save_file(grads, os.path.join(out, "grads.safetensors"))
    print(f"wikihop_grad: ids {tuple(ids.shape)}, globals per row {glob.sum(1).tolist()}, "
          f"candidates {cand_mask.sum(1).tolist()}, loss {loss.item():.6f}, {len(grads)} gradients")


def bundled_tiny_model():
    """assets/tiny-longformer: the model `cargo xtask encode` runs on by default, with an example
    input and the sample set's tokenizer (vocabulary 2,048 + the 4 WikiHop markers), so `--text` works."""
    repo = os.path.join(ROOT, "..", "..")
    out = os.path.join(repo, "assets", "tiny-longformer")
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(repo, "data", "wikihop-sample", "tokenizer", "tokenizer.json"), out)
    m = perturb(LongformerModel(tiny_config([8, 8], vocab=2052)), 11)
    m.config.to_json_file(os.path.join(out, "config.json"))
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(out, "model.safetensors"))
    g = torch.Generator().manual_seed(12)
    rows = [random_row(g, 40), random_row(g, 23)]
    example = {
        "input_ids": rows,
        "attention_mask": [[1] * len(r) for r in rows],
        "global_attention_mask": [[1 if t == 0 else 0 for t in range(len(r))] for r in rows],
    }
    with open(os.path.join(out, "example.json"), "w") as f:
        json.dump(example, f)
    print("assets/tiny-longformer written")


def half_precision():
    """tests/fixtures/half_precision: a float32 model and HF's outputs in float32, bfloat16 and
    float16 (each run on the weights cast to that dtype; outputs stored as float32), on a ragged
    batch with many global tokens, for the half-precision tests."""
    m = perturb(LongformerModel(tiny_config(8)), 13)
    g = torch.Generator().manual_seed(14)
    rows = [random_row(g, n) for n in (61, 40)]
    ids, mask, glob = rows_to_tensors(rows, [[0, 1, 2, 30, 60], [0, 7, 8]])
    save_case("half_precision", m, ids, mask, glob)
    out = os.path.join(ROOT, "half_precision")
    expected = {}
    with torch.no_grad():
        full = m(input_ids=ids, attention_mask=mask, global_attention_mask=glob).last_hidden_state
        for name, dtype in (("bf16", torch.bfloat16), ("f16", torch.float16)):
            half = copy.deepcopy(m).to(dtype)
            hidden = half(input_ids=ids, attention_mask=mask, global_attention_mask=glob).last_hidden_state
            expected[f"last_hidden_state_{name}"] = hidden.float().contiguous()
            print(f"half_precision {name}: finite {bool(torch.isfinite(hidden).all())}, "
                  f"max |{name} - f32| {(hidden.float() - full).abs().max().item():.4f}")
    save_file(expected, os.path.join(out, "expected_half.safetensors"))


def half_checkpoints():
    """tests/fixtures/half_checkpoint_bin and half_checkpoint_safetensors: checkpoints stored in
    half precision, as `model.half().save_pretrained()` or `torch.save` of a half model write
    them: float16 weights in pytorch_model.bin (longformer. prefix) and bfloat16 weights in
    model.safetensors. Expected outputs: HF's float32 run on those weights cast back to float32
    (what loading a half checkpoint into a float32 model computes)."""
    g = torch.Generator().manual_seed(16)
    rows = [random_row(g, n) for n in (33, 21)]
    ids, mask, glob = rows_to_tensors(rows, [[0, 9], [0]])
    for name, dtype, fmt, prefix, seed in (("half_checkpoint_bin", torch.float16, "bin", "longformer.", 17),
                                           ("half_checkpoint_safetensors", torch.bfloat16, "safetensors", "", 18)):
        stored = perturb(LongformerModel(tiny_config(8)), seed).to(dtype)
        upcast = copy.deepcopy(stored).float()
        upcast.config.dtype = dtype  # "dtype": "float16", as save_pretrained of a half model writes
        # The half weights in the file; HF's outputs (and config.json) from the upcast model.
        save_case(name, stored, ids, mask, glob, prefix=prefix, fmt=fmt, base=upcast)


def masked_rows():
    """tests/fixtures/masked_rows: attention masks HF takes that are not plain padding, found by
    scripts/parity_sweep.py's edge cases: a row whose mask is all zeros (its global flag
    ignored), a row whose only unmasked tokens are its two global ones, pad ids left unmasked
    inside a row, and masked-out tokens inside a row, next to an ordinary row."""
    m = perturb(LongformerModel(tiny_config(4)), 19)
    g = torch.Generator().manual_seed(20)
    L = 12
    ids = torch.tensor([random_row(g, L) for _ in range(5)])
    ids[3, 4:7] = PAD
    mask = torch.ones((5, L), dtype=torch.long)
    mask[1] = 0
    mask[2, 1:L - 1] = 0
    mask[4, [2, 5, 6, 9]] = 0
    glob = torch.zeros((5, L), dtype=torch.long)
    glob[:, 0] = 1
    glob[2, L - 1] = 1
    save_case("masked_rows", m, ids, mask, glob, attentions=True)


def padding_grads():
    """tests/fixtures/padding_grads and padding_grads_mlm: the gradient of the sum of the outputs
    times a cotangent w.r.t. every parameter, of a base model (last_hidden_state) and of a
    masked-LM head with tied word embeddings (logits), dropout 0, two token types, the cotangent
    on every position, padding included. HF's word and position embeddings are nn.Embedding with
    padding_idx, so the rows a padding token reads (word `pad_token_id`, position
    `pad_token_id`) get no gradient from the lookup, even for a pad id left unmasked inside a
    row; the tied decoder still gives the word row its share. Rows: right padding, left padding,
    pad ids inside a row, a masked-out token; global tokens in three of them. Files:
    config.json, model.safetensors, case.safetensors (the ids, masks, token types and
    cotangents, as scripts/grad_sweep.py writes them), expected.safetensors (the outputs) and
    grads.safetensors (HF names)."""
    config = tiny_config([4, 8])
    config.type_vocab_size = 2
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    g = torch.Generator().manual_seed(22)
    L = 19
    ids = torch.full((4, L), PAD, dtype=torch.long)
    mask = torch.zeros((4, L), dtype=torch.long)
    for b, (start, n) in enumerate([(0, 13), (L - 11, 11), (0, L), (0, 16)]):
        ids[b, start:start + n] = torch.tensor(random_row(g, n))
        mask[b, start:start + n] = 1
    ids[2, 5:8] = PAD  # pad ids inside a row, attended as any token
    mask[3, 6] = 0  # a masked-out token inside a row
    glob = torch.zeros((4, L), dtype=torch.long)
    glob[0, 0] = glob[1, L - 11] = glob[2, [0, 6, 12]] = 1
    types = torch.randint(0, 2, (4, L), generator=g) * mask
    feed = dict(input_ids=ids, attention_mask=mask, global_attention_mask=glob,
                token_type_ids=types)
    base = perturb(LongformerModel(config, add_pooling_layer=False), 21)
    cotangent = torch.randn(4, L, config.hidden_size, generator=g)
    grads = save_grad_case("padding_grads", base, feed, {"last_hidden_state": cotangent})
    for table in ("word", "position"):
        assert grads[f"embeddings.{table}_embeddings.weight"][PAD].abs().max() == 0
    mlm = perturb(LongformerForMaskedLM(config), 23)
    cotangent = torch.randn(4, L, config.vocab_size, generator=torch.Generator().manual_seed(24))
    grads = save_grad_case("padding_grads_mlm", mlm, feed, {"logits": cotangent})
    assert grads["longformer.embeddings.position_embeddings.weight"][PAD].abs().max() == 0
    assert grads["longformer.embeddings.word_embeddings.weight"][PAD].abs().max() > 0  # decoder


def save_grad_case(name, model, feed, cotangents):
    """A model, its inputs and cotangents, its outputs and its parameters' gradients of
    sum(output * cotangent) (see padding_grads)."""
    res = model(**feed)
    outputs = {n: getattr(res, n) for n in cotangents}
    sum((outputs[n] * c).sum() for n, c in cotangents.items()).backward()
    grads = {n: p.grad.contiguous() for n, p in model.named_parameters()}
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    model.save_pretrained(out)
    case = dict(feed)
    case.update({("cotangent" if n == "last_hidden_state" else f"cotangent_{n}"): c
                 for n, c in cotangents.items()})
    save_file(case, os.path.join(out, "case.safetensors"))
    save_file({n: o.detach().contiguous() for n, o in outputs.items()},
              os.path.join(out, "expected.safetensors"))
    save_file(grads, os.path.join(out, "grads.safetensors"))
    print(f"{name}: ids {tuple(feed['input_ids'].shape)}, real "
          f"{feed['attention_mask'].sum(1).tolist()}, globals per row "
          f"{feed['global_attention_mask'].sum(1).tolist()}, outputs {list(outputs)}")
    return grads


def head_losses():
    """losses.safetensors in each tests/fixtures/head_* case: HF's loss for labels (the heads'
    `labels=`, `start_positions=`/`end_positions=`), on the case's own model and inputs (the
    given global mask), with the labels that exercise HF's rules: -100 ignored (masked LM,
    token and sequence classification, multiple choice), answer positions clamped to
    0..=seq_length and seq_length ignored (question answering), and the three problem types of
    sequence classification (single-label, regression, multi-label). The models are read back
    from the case's files and must give the case's logits first."""
    from safetensors.torch import load_file
    from transformers import (LongformerForMultipleChoice, LongformerForQuestionAnswering,
                              LongformerForSequenceClassification,
                              LongformerForTokenClassification)
    g = torch.Generator().manual_seed(40)

    def load(name, cls):
        d = os.path.join(ROOT, name)
        config = LongformerConfig.from_pretrained(d)
        model = cls(config).eval()
        path = os.path.join(d, "model.safetensors")
        state = load_file(path) if os.path.exists(path) else torch.load(
            os.path.join(d, "pytorch_model.bin"), weights_only=True)
        state = {("longformer." + k[len("roberta."):] if k.startswith("roberta.") else k): v
                 for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not [k for k in missing if "decoder" not in k], missing
        model.tie_weights()
        expected = load_file(os.path.join(d, "expected.safetensors"))
        feed = {k: expected[k] for k in ("input_ids", "attention_mask", "global_attention_mask")}
        return d, model, feed, expected

    def save(d, tensors):
        save_file({k: v.contiguous() for k, v in tensors.items()},
                  os.path.join(d, "losses.safetensors"))
        print(f"{os.path.basename(d)}/losses.safetensors: "
              + ", ".join(f"{k} {v.item():.4f}" for k, v in tensors.items() if k.endswith("loss")))

    def check(out, expected, key="logits"):
        diff = (getattr(out, key) - expected[key]).abs().max().item()
        assert diff < 1e-5, f"the model read back differs from the case's {key} by {diff}"

    with torch.no_grad():
        # Masked LM: a few positions with labels, the rest (and padding) -100.
        d, m, feed, expected = load("head_mlm", LongformerForMaskedLM)
        labels = torch.full(feed["input_ids"].shape, -100, dtype=torch.long)
        for row, length in enumerate(feed["attention_mask"].sum(1).tolist()):
            for col in torch.randperm(length, generator=g)[:4].tolist():
                labels[row, col] = torch.randint(0, m.config.vocab_size, (1,), generator=g).item()
        out = m(**feed, labels=labels)
        check(out, expected)
        save(d, {"labels": labels, "loss": out.loss.reshape(1)})

        # Token classification: every real token labelled, padding -100.
        d, m, feed, expected = load("head_token_classification", LongformerForTokenClassification)
        labels = torch.randint(0, m.config.num_labels, feed["input_ids"].shape, generator=g)
        labels[feed["attention_mask"] == 0] = -100
        out = m(**feed, labels=labels)
        check(out, expected)
        save(d, {"labels": labels, "loss": out.loss.reshape(1)})

        # Sequence classification: the three problem types on the same logits.
        d, m, feed, expected = load("head_sequence_classification",
                                    LongformerForSequenceClassification)
        n, k = feed["input_ids"].shape[0], m.config.num_labels
        labels = torch.tensor([2, -100, 0])
        assert len(labels) == n
        out = m(**feed, labels=labels)
        check(out, expected)
        single = out.loss
        targets = torch.randn(n, k, generator=g)
        m.config.problem_type = "regression"
        regression = m(**feed, labels=targets).loss
        multi = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.5, 1.0, 0.0]])
        m.config.problem_type = "multi_label_classification"
        multi_label = m(**feed, labels=multi).loss
        save(d, {"labels": labels, "loss": single.reshape(1),
                 "regression_targets": targets, "regression_loss": regression.reshape(1),
                 "multi_label_targets": multi, "multi_label_loss": multi_label.reshape(1)})

        # Question answering: an ordinary span, a negative start (clamped to 0) and an end past
        # the sequence (ignored), per row.
        d, m, feed, expected = load("head_question_answering", LongformerForQuestionAnswering)
        seq = feed["input_ids"].shape[1]
        starts = torch.tensor([7, -3, 12])
        ends = torch.tensor([9, 4, seq + 5])
        out = m(**feed, start_positions=starts, end_positions=ends)
        check(out, expected, "start_logits")
        save(d, {"start_positions": starts, "end_positions": ends, "loss": out.loss.reshape(1)})

        # Multiple choice: one label per example.
        d, m, feed, expected = load("head_multiple_choice", LongformerForMultipleChoice)
        labels = torch.tensor([2, 0])
        out = m(**feed, labels=labels)
        check(out, expected)
        save(d, {"labels": labels, "loss": out.loss.reshape(1)})


def hidden_states():
    """tests/fixtures/hidden_states: HF's output_hidden_states (embedding output + every layer)
    on a ragged, right-padded batch with global tokens, 3 layers, window 8 and length 27 (not a
    multiple of the window, so HF pads internally and slices the padding off every state)."""
    m = perturb(LongformerModel(tiny_config(8, layers=3)), 15)
    g = torch.Generator().manual_seed(16)
    rows = [random_row(g, n) for n in (27, 13, 22)]
    ids, mask, glob = rows_to_tensors(rows, [[0, 9], [0], [2, 3, 21]])
    assert ids.shape[1] % 8 != 0
    save_case("hidden_states", m, ids, mask, glob, hidden_states=True)


def heads():
    """The five task heads' fixtures (scripts/gen_head_fixtures.py)."""
    import gen_head_fixtures
    gen_head_fixtures.main()


def conversion():
    """The RoBERTa source and its reference conversion (scripts/gen_conversion_fixtures.py)."""
    import gen_conversion_fixtures as conv
    conv.main_case()
    conv.bin_case()
    conv.short_input_check()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    parts = {"wikihop_grad": wikihop_grad, "heads": heads, "conversion": conversion,
             "half_precision": half_precision, "hidden_states": hidden_states,
             "half_checkpoints": half_checkpoints, "masked_rows": masked_rows,
             "padding_grads": padding_grads, "head_losses": head_losses}
    if len(sys.argv) == 2 and sys.argv[1] in parts:
        parts[sys.argv[1]]()
    elif sys.argv[1:]:
        sys.exit(f"usage: {sys.argv[0]} [{'|'.join(parts)}]")
    else:
        main()
        wikihop_grad()
        heads()
        head_losses()
        conversion()
        half_precision()
        hidden_states()
        half_checkpoints()
        masked_rows()
        padding_grads()
        bundled_tiny_model()
