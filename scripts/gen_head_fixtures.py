#!/usr/bin/env python3
"""Generate HuggingFace parity fixtures for the Longformer task heads (dev-only; CI never runs this).

Each case is a tiny random-weight HF head model (`LongformerForMaskedLM`, `...ForSequenceClassification`,
`...ForQuestionAnswering`, `...ForTokenClassification`, `...ForMultipleChoice`) saved under
tests/fixtures/head_<name>/ as config.json plus weights, and expected.safetensors holding the inputs
(int64) and HF's float32 logits twice: with the given `global_attention_mask` (`logits`, or
`start_logits` / `end_logits`) and with `global_attention_mask=None`, where HF computes the head's
default (`*_default_global`):

| case | weights | default global attention (None) |
|---|---|---|
| head_mlm | save_pretrained (model.safetensors, no decoder duplicates) | none |
| head_mlm_bin | torch.save(state_dict): pytorch_model.bin with lm_head.decoder.{weight,bias} | none |
| head_sequence_classification | save_pretrained, num_labels 3, per-layer windows | the first token |
| head_question_answering | torch.save: pytorch_model.bin | tokens before the first sep |
| head_token_classification | save_pretrained, keys renamed longformer. -> roberta., 5 labels | none |
| head_multiple_choice | save_pretrained (with pooler); inputs [batch, num_choices, seq] | tokens after the second sep |
| head_mlm_text | save_pretrained + the sample tokenizer.json (vocab 2,048 + 4 markers) | none |
| head_mlm_untied | save_pretrained, tie_word_embeddings=False: its own lm_head.decoder.{weight,bias} | none |

head_mlm_text also holds text.txt, and the ids HF's tokenizer gives it (`AutoTokenizer` on the
fixture directory: Longformer's class, so no prefix space whatever tokenizer.json says) and
`mask_token_id` in expected.safetensors, with HF's logits at the two `<mask>` positions only
(`mask_logits`, `[2, vocab_size]`), for the `longformer encode --head mlm --text` test.

    pip install torch transformers safetensors tokenizers
    python scripts/gen_head_fixtures.py             # rewrites tests/fixtures/head_*
    python scripts/gen_head_fixtures.py mlm_untied  # only tests/fixtures/head_mlm_untied
"""
import os
import shutil
import sys

import torch
# The same weight perturbation and right padding (with PAD = 1) as the other fixtures.
from gen_fixtures import perturb, rows_to_tensors as pad_rows
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import (
    AutoTokenizer,
    LongformerConfig,
    LongformerForMaskedLM,
    LongformerForMultipleChoice,
    LongformerForQuestionAnswering,
    LongformerForSequenceClassification,
    LongformerForTokenClassification,
)

torch.set_num_threads(1)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ROOT = os.path.join(REPO, "tests", "fixtures")
VOCAB, PAD, BOS, SEP = 97, 1, 0, 2


def tiny_config(window, layers=2, vocab=VOCAB, hidden=32, heads=4, **extra):
    return LongformerConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, hidden_act="gelu", max_position_embeddings=130,
        type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=PAD, bos_token_id=BOS,
        eos_token_id=SEP, sep_token_id=SEP, attention_window=window, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, **extra,
    )

def words(g, n, vocab=VOCAB):
    """n ordinary token ids (no <s>, <pad>, </s>)."""
    return torch.randint(3, vocab, (n,), generator=g).tolist()


def fresh_dir(name):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    return out


def save_bin(model, out):
    """pytorch_model.bin as torch.save(state_dict) (transformers 5 writes only safetensors)."""
    model.config.to_json_file(os.path.join(out, "config.json"))
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()},
               os.path.join(out, "pytorch_model.bin"))


def run(model, ids, mask, glob):
    """HF outputs with the given global mask and with None (the head's default)."""
    with torch.no_grad():
        given = model(input_ids=ids, attention_mask=mask, global_attention_mask=glob)
        default = model(input_ids=ids, attention_mask=mask)
    return given, default


def save_expected(out, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "expected.safetensors"))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{os.path.basename(out)}: {', '.join(f'{k} {tuple(v.shape)}' for k, v in tensors.items())}; "
          f"{size / 1024:.0f} KiB")


def logits_case(name, model, ids, mask, glob, fmt="safetensors"):
    out = fresh_dir(name)
    if fmt == "safetensors":
        model.save_pretrained(out)
    else:
        save_bin(model, out)
    given, default = run(model, ids, mask, glob)
    save_expected(out, {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob,
                        "logits": given.logits.float(),
                        "logits_default_global": default.logits.float()})
    return out


def masked_lm(g):
    model = perturb(LongformerForMaskedLM(tiny_config(8)), 31)
    rows = [[BOS] + words(g, 25) + [SEP], [BOS] + words(g, 11) + [SEP], [BOS] + words(g, 18) + [SEP]]
    ids, mask, glob = pad_rows(rows, [[0, 7], [0], [3, 4, 19]])
    logits_case("head_mlm", model, ids, mask, glob)
    # The same kind of checkpoint as a .bin holding the tied duplicates lm_head.decoder.{weight,bias}.
    model = perturb(LongformerForMaskedLM(tiny_config([4, 8])), 32)
    state = model.state_dict()
    assert "lm_head.decoder.weight" in state and "lm_head.decoder.bias" in state
    rows = [[BOS] + words(g, 20) + [SEP], [BOS] + words(g, 9) + [SEP]]
    ids, mask, glob = pad_rows(rows, [[0], [0, 5]])
    logits_case("head_mlm_bin", model, ids, mask, glob, fmt="bin")


def masked_lm_untied():
    """An untied decoder (HF 5: lm_head.decoder.{weight,bias} are their own parameters, and
    lm_head.bias is unused); tiny: 16 wide, one layer, two short rows."""
    g = torch.Generator().manual_seed(38)
    config = tiny_config(4, layers=1, hidden=16, heads=2, tie_word_embeddings=False)
    model = perturb(LongformerForMaskedLM(config), 38)
    decoder, embed = model.lm_head.decoder, model.longformer.embeddings.word_embeddings
    assert (decoder.weight - embed.weight).abs().max() > 0.1
    assert (decoder.bias - model.lm_head.bias).abs().max() > 0.1
    rows = [[BOS] + words(g, 9) + [SEP], [BOS] + words(g, 5) + [SEP]]
    ids, mask, glob = pad_rows(rows, [[0], [0, 3]])
    logits_case("head_mlm_untied", model, ids, mask, glob)


def sequence_classification(g):
    config = tiny_config([4, 8], num_labels=3)
    model = perturb(LongformerForSequenceClassification(config), 33)
    rows = [[BOS] + words(g, 30) + [SEP], [BOS] + words(g, 13) + [SEP], [BOS] + words(g, 21) + [SEP]]
    ids, mask, glob = pad_rows(rows, [[0, 9], [0], [2, 17]])
    logits_case("head_sequence_classification", model, ids, mask, glob)


def qa_row(g, question, context):
    return [BOS] + words(g, question) + [SEP, SEP] + words(g, context) + [SEP]


def question_answering(g):
    model = perturb(LongformerForQuestionAnswering(tiny_config(8)), 34)
    rows = [qa_row(g, 5, 24), qa_row(g, 3, 12), qa_row(g, 8, 17)]
    # Given: global attention on the question and a context token.
    ids, mask, glob = pad_rows(rows, [[0, 1, 2, 3, 4, 5, 20], list(range(4)), list(range(9))])
    out = fresh_dir("head_question_answering")
    save_bin(model, out)
    given, default = run(model, ids, mask, glob)
    save_expected(out, {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob,
                        "start_logits": given.start_logits.float(),
                        "end_logits": given.end_logits.float(),
                        "start_logits_default_global": default.start_logits.float(),
                        "end_logits_default_global": default.end_logits.float()})


def token_classification(g):
    model = perturb(LongformerForTokenClassification(tiny_config(8, num_labels=5)), 35)
    rows = [[BOS] + words(g, 22) + [SEP], [BOS] + words(g, 30) + [SEP]]
    ids, mask, glob = pad_rows(rows, [[0], [0, 12, 31]])
    out = logits_case("head_token_classification", model, ids, mask, glob)
    # The original allenai layout: every encoder key under roberta. instead of longformer.
    path = os.path.join(out, "model.safetensors")
    state = load_file(path)
    save_file({("roberta." + k[len("longformer."):] if k.startswith("longformer.") else k): v
               for k, v in state.items()}, path, metadata={"format": "pt"})


def multiple_choice(g):
    model = perturb(LongformerForMultipleChoice(tiny_config(8)), 36)
    batch, choices = 2, 3
    rows, globals_ = [], []
    for b in range(batch):
        context = words(g, 14 + 6 * b)
        for c in range(choices):
            rows.append([BOS] + context + [SEP, SEP] + words(g, 2 + c + b) + [SEP])
            globals_.append([0] + list(range(len(context) + 3, len(rows[-1]) - 1)))
    ids, mask, glob = pad_rows(rows, globals_)
    shape = (batch, choices, ids.shape[1])
    ids, mask, glob = ids.view(shape), mask.view(shape), glob.view(shape)
    logits_case("head_multiple_choice", model, ids, mask, glob)


def masked_lm_text():
    tokenizer_json = os.path.join(REPO, "data", "wikihop-sample", "tokenizer", "tokenizer.json")
    tokenizer = Tokenizer.from_file(tokenizer_json)
    mask_id = tokenizer.token_to_id("<mask>")
    # longformer-data's tokenizer appends the four WikiHop markers: the vocabulary the CLI sees.
    vocab = tokenizer.get_vocab_size(with_added_tokens=True) + 4
    model = perturb(LongformerForMaskedLM(tiny_config([4, 8], vocab=vocab, hidden=16, heads=2)), 37)
    out = fresh_dir("head_mlm_text")
    model.save_pretrained(out)
    shutil.copy(tokenizer_json, out)
    text = "ada lovelace was born in <mask> and wrote about the analytical <mask> of babbage."
    with open(os.path.join(out, "text.txt"), "w") as f:
        f.write(text)
    ids = AutoTokenizer.from_pretrained(out)(text)["input_ids"]
    assert ids[0] == BOS and ids[-1] == SEP, ids
    assert ids.count(mask_id) == 2, ids
    ids = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    # Only the masked positions' logits, to keep the fixture small: [n_masks, vocab_size].
    save_expected(out, {"input_ids": ids, "mask_token_id": torch.tensor([mask_id]),
                        "mask_logits": logits[ids == mask_id].float()})


def main():
    os.makedirs(ROOT, exist_ok=True)
    if sys.argv[1:] == ["mlm_untied"]:
        masked_lm_untied()
        return
    g = torch.Generator().manual_seed(30)
    masked_lm(g)
    sequence_classification(g)
    question_answering(g)
    token_classification(g)
    multiple_choice(g)
    masked_lm_text()
    masked_lm_untied()


if __name__ == "__main__":
    main()
