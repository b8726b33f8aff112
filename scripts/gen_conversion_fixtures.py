#!/usr/bin/env python3
"""Generate the fixtures of `longformer convert` (RoBERTa -> Longformer) with HF transformers.

Dev-only; CI never runs this. Writes tests/fixtures/roberta_source/:

  config.json, model.safetensors   a tiny random-weight RobertaForMaskedLM (hidden 32, 2 layers,
                                   4 heads, 16 positions), keys prefixed `roberta.`, plus the
                                   `roberta.embeddings.position_ids` buffer older transformers saved
  tokenizer.json, tokenizer_config.json, special_tokens_map.json
                                   a toy BPE tokenizer (vocabulary 120) so the copy is exercised
  expected.safetensors             the source converted by the reference recipe below (max_pos 40,
                                   window 8): its position embedding and layer 1's global
                                   projections under their Longformer keys; int64 inputs longer
                                   than the source's 16 positions with some global tokens; and
                                   `transformers.LongformerForMaskedLM`'s float32 last_hidden_state
                                   and MLM logits on them
  bin/                             a second, smaller source: a bare-key RobertaModel in float16,
                                   saved as pytorch_model.bin, and bin/expected.safetensors with its
                                   conversion (max_pos 20, window 4) in float16

The reference recipe is allenai's `convert_model_to_long.ipynb`, except that position rows 0 and 1
are kept (the notebook left them uninitialised) and the tiling fills every row.

    pip install torch transformers safetensors tokenizers
    python scripts/gen_conversion_fixtures.py              # rewrites tests/fixtures/roberta_source
    python scripts/gen_conversion_fixtures.py check DIR    # HF loads DIR (converted by
                                                           # `longformer convert`) and must
                                                           # reproduce expected.safetensors
"""
import json
import os
import shutil
import sys
import tempfile

import torch
from gen_fixtures import perturb  # the same weight perturbation as the other fixtures
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (LongformerForMaskedLM, LongformerModel, RobertaConfig,
                          RobertaForMaskedLM, RobertaModel, RobertaTokenizerFast)

torch.set_num_threads(1)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(REPO, "tests", "fixtures", "roberta_source")
PAD = 1
SRC_POSITIONS = 18  # rows of the source's position embedding: 16 tokens + padding offset 2
MAX_POS, WINDOW = 40, 8  # the conversion of the main case
BIN_MAX_POS, BIN_WINDOW = 20, 4  # the conversion of the bin/ case
TOL = 1e-5

def toy_tokenizer(vocab_size):
    """A small BPE tokenizer with RoBERTa's special tokens at RoBERTa's ids."""
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    text = ["the long document attention window slides over every token of the sequence",
            "global tokens attend to all tokens and all tokens attend to them",
            "position embeddings are copied from the short model to the long one"] * 20
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    assert tok.get_vocab_size() <= vocab_size, tok.get_vocab_size()
    return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>", model_max_length=16)


def roberta_config(vocab, hidden, layers, heads, positions):
    return RobertaConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, hidden_act="gelu", max_position_embeddings=positions,
        type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=PAD, bos_token_id=0, eos_token_id=2,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )


# ---------------------------------------------------------------------------------------------
# The reference recipe (what `longformer convert` must do), on a state dict and a config dict.

TOKENIZER_FILES = ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json"]


def extend_positions(src, new_rows, offset=PAD + 1):
    """Rows 0..offset kept; rows offset.. tiled with the source's rows offset.., last copy cut."""
    new = src.new_empty((new_rows, src.shape[1]))
    new[:offset] = src[:offset]
    k, step = offset, src.shape[0] - offset
    while k < new_rows:
        n = min(step, new_rows - k)
        new[k:k + n] = src[offset:offset + n]
        k += step
    return new


def convert_state(state, num_layers, new_rows):
    prefix = "roberta." if any(k.startswith("roberta.embeddings.") for k in state) else ""
    new_prefix = "longformer." if prefix else ""
    out = {}
    for key, value in state.items():
        if key.endswith("embeddings.position_ids") or key.endswith("embeddings.token_type_ids"):
            continue  # buffers LongformerEmbeddings does not have
        if prefix and key.startswith(prefix):
            key = new_prefix + key[len(prefix):]
        out[key] = value.clone()
    pos = new_prefix + "embeddings.position_embeddings.weight"
    out[pos] = extend_positions(out[pos], new_rows)
    for i in range(num_layers):
        base = f"{new_prefix}encoder.layer.{i}.attention.self."
        for proj in ("query", "key", "value"):
            for part in ("weight", "bias"):
                out[f"{base}{proj}_global.{part}"] = out[f"{base}{proj}.{part}"].clone()
    return {k: v.contiguous() for k, v in out.items()}


def convert_config(config, max_pos, window):
    config = dict(config)
    config["model_type"] = "longformer"
    config["max_position_embeddings"] = max_pos + PAD + 1
    config["attention_window"] = [window] * config["num_hidden_layers"]
    if "architectures" in config and config["architectures"]:
        config["architectures"] = [a.replace("Roberta", "Longformer", 1) if a.startswith("Roberta")
                                   else a for a in config["architectures"]]
    return config


def convert_reference(src, dst, max_pos, window):
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    if os.path.exists(os.path.join(src, "model.safetensors")):
        state = load_file(os.path.join(src, "model.safetensors"))
    else:
        state = torch.load(os.path.join(src, "pytorch_model.bin"), weights_only=True)
    new_config = convert_config(config, max_pos, window)
    state = convert_state(state, config["num_hidden_layers"], new_config["max_position_embeddings"])
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(new_config, f, indent=2)
    save_file(state, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), dst)
    tc = os.path.join(dst, "tokenizer_config.json")
    if os.path.exists(tc):
        with open(tc) as f:
            tok_config = json.load(f)
        tok_config["model_max_length"] = max_pos
        with open(tc, "w") as f:
            json.dump(tok_config, f, indent=2)
    return state


# ---------------------------------------------------------------------------------------------


def inputs(vocab, lengths, globals_, seed):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.full((len(lengths), L), PAD, dtype=torch.long)
    mask = torch.zeros((len(lengths), L), dtype=torch.long)
    glob = torch.zeros((len(lengths), L), dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.tensor([0] + torch.randint(5, vocab, (n - 2,), generator=g).tolist() + [2])
        mask[b, :n] = 1
        for p in globals_[b]:
            glob[b, p] = 1
    return ids, mask, glob


def load_long_mlm(path):
    model, info = LongformerForMaskedLM.from_pretrained(path, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"HF loading {path}: {problems}"
    return model.eval()


def hf_outputs(model, ids, mask, glob):
    with torch.no_grad():
        res = model(input_ids=ids, attention_mask=mask, global_attention_mask=glob,
                    output_hidden_states=True)
    return res.hidden_states[-1].float().contiguous(), res.logits.float().contiguous()


def main_case():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tokenizer = toy_tokenizer(120)
    vocab = 120
    config = roberta_config(vocab, 32, 2, 4, SRC_POSITIONS)
    model = perturb(RobertaForMaskedLM(config), 31)
    model.save_pretrained(OUT)
    tokenizer.save_pretrained(OUT)
    # Older transformers saved the position_ids buffer; the converter must drop it.
    path = os.path.join(OUT, "model.safetensors")
    state = load_file(path)
    state["roberta.embeddings.position_ids"] = torch.arange(SRC_POSITIONS)[None, :]
    save_file(state, path, metadata={"format": "pt"})

    with tempfile.TemporaryDirectory() as ref:
        converted = convert_reference(OUT, ref, MAX_POS, WINDOW)
        long_model = load_long_mlm(ref)
        with open(os.path.join(ref, "tokenizer_config.json")) as f:
            assert json.load(f)["model_max_length"] == MAX_POS

    ids, mask, glob = inputs(vocab, (37, 29), [[0, 10], [0]], seed=32)
    assert ids.shape[1] > SRC_POSITIONS - 2, "inputs must need the tiled positions"
    hidden, logits = hf_outputs(long_model, ids, mask, glob)
    keep = ["longformer.embeddings.position_embeddings.weight"] + [
        f"longformer.encoder.layer.1.attention.self.{p}_global.{part}"
        for p in ("query", "key", "value") for part in ("weight", "bias")]
    expected = {k: converted[k] for k in keep}
    expected.update({"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob,
                     "last_hidden_state": hidden, "logits": logits})
    save_file({k: v.contiguous() for k, v in expected.items()},
              os.path.join(OUT, "expected.safetensors"))
    print(f"roberta_source: vocab {vocab}, source positions {SRC_POSITIONS}, converted to "
          f"{MAX_POS + 2} rows, window {WINDOW}; inputs {tuple(ids.shape)}, "
          f"globals per row {glob.sum(1).tolist()}")


def bin_case():
    out = os.path.join(OUT, "bin")
    os.makedirs(out)
    config = roberta_config(16, 8, 1, 2, 10)
    model = perturb(RobertaModel(config), 33).half()
    config.architectures = ["RobertaModel"]
    config.to_json_file(os.path.join(out, "config.json"))
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()},
               os.path.join(out, "pytorch_model.bin"))
    with tempfile.TemporaryDirectory() as ref:
        converted = convert_reference(out, ref, BIN_MAX_POS, BIN_WINDOW)
        loaded, info = LongformerModel.from_pretrained(ref, output_loading_info=True)
        assert not {k: v for k, v in info.items() if v}, info
    keep = ["embeddings.position_embeddings.weight",
            "encoder.layer.0.attention.self.key_global.weight",
            "encoder.layer.0.attention.self.value_global.bias"]
    assert all(converted[k].dtype == torch.float16 for k in keep)
    save_file({k: converted[k] for k in keep}, os.path.join(out, "expected.safetensors"))
    print(f"roberta_source/bin: float16 bare-key RobertaModel, {len(converted)} tensors converted")


def short_input_check():
    """The converted model agrees with the source RoBERTa on a short input without global tokens
    when the window covers the whole sequence (a sanity check of the recipe itself)."""
    src = RobertaForMaskedLM.from_pretrained(OUT).eval()
    with tempfile.TemporaryDirectory() as ref:
        convert_reference(OUT, ref, MAX_POS, 32)
        long_model = load_long_mlm(ref)
    ids = torch.tensor([[0, 17, 40, 99, 5, 63, 2]])
    with torch.no_grad():
        a = src(input_ids=ids).logits
        b = long_model(input_ids=ids).logits
    diff = (a - b).abs().max().item()
    assert diff < TOL, diff
    print(f"short input, window covering it: RoBERTa vs converted Longformer logits differ by {diff:.2e}")


def check(converted_dir):
    """HF loads a directory written by `longformer convert` and reproduces expected.safetensors."""
    expected = load_file(os.path.join(OUT, "expected.safetensors"))
    state = load_file(os.path.join(converted_dir, "model.safetensors"))
    for key in [k for k in expected if k.startswith("longformer.")]:
        assert torch.equal(state[key], expected[key]), f"{key} differs from the reference"
    model = load_long_mlm(converted_dir)
    hidden, logits = hf_outputs(model, expected["input_ids"], expected["attention_mask"],
                                expected["global_attention_mask"])
    dh = (hidden - expected["last_hidden_state"]).abs().max().item()
    dl = (logits - expected["logits"]).abs().max().item()
    with open(os.path.join(converted_dir, "tokenizer_config.json")) as f:
        max_len = json.load(f)["model_max_length"]
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(converted_dir)
    print(f"HF loaded {converted_dir}: no missing/unexpected keys; "
          f"last_hidden_state max |diff| {dh:.3e}, logits max |diff| {dl:.3e}; "
          f"tokenizer {type(tok).__name__} model_max_length {tok.model_max_length} "
          f"(file {max_len})")
    assert dh <= TOL and dl <= TOL, (dh, dl)
    assert tok.model_max_length == MAX_POS


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        main_case()
        bin_case()
        short_input_check()
    else:
        sys.exit(f"usage: {sys.argv[0]} [check CONVERTED_DIR]")
