#!/usr/bin/env python3
"""Dev-only probe for issue #4: does a tiny random-init Longformer learn a synthetic WikiHop-style
task from the answer loss alone? (CI never runs this.)

HF transformers' PyTorch `LongformerModel` stands in for ours (the two match to 1e-4; this one is
quicker to vary). Examples mirror `crates/longformer-data/src/sample.rs` at word level: every
entity name is one token, as the sample's BPE makes it. `--hops` picks the task:

    0: the answer's name is in the question ("country of citizenship <answer>")
    1: "P was born in K" links the question's person P to the answer K
    2: the sample set's chain: "P was born in C" and "C is a city in K" (two documents)

The layout is the paper's (`[question] q [/question] [ent] c1 [/ent] ... </s> supports`), global
attention on the whole candidate part (`--no-global`: none, use a window covering everything), and
the answer score read at each `[ent]` (`--read-at name`: at the candidate's name token instead).

    pip install torch transformers
    python scripts/wikihop_learnability.py --hops 0 --dropout 0 --init-range 0.1 --lr 3e-3 --steps 1500
    python scripts/wikihop_learnability.py --hops 0,1 --dev-hops 0,1 --dropout 0 --init-range 0.1 --steps 6000
"""
import argparse
import random
import time

import torch
from transformers import LongformerConfig, LongformerModel

SPECIAL = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4,
           "[question]": 5, "[/question]": 6, "[ent]": 7, "[/ent]": 8}
BORN = ["{p} was born in {c} .", "{p} was born in the town of {c} .", "{p} grew up in {c} .",
        "{p} is a {job} from {c} ."]
LOCATED = ["{c} is a city in {k} .", "{c} is a town in the north of {k} .", "{c} lies in {k} .",
           "{c} is the capital of a province of {k} ."]
PERSON_FILLER = ["{p} worked as a {job} .", "{p} wrote {n} books .", "{p} died in {year} ."]
CITY_FILLER = ["{c} has a large {thing} .", "the population of {c} is about {n} thousand .",
               "{c} was founded in {year} ."]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hops", default="2", help="task(s) of the training set, comma separated: 0, 1, 2")
    p.add_argument("--dev-hops", default="2", help="dev sets to report, comma separated")
    p.add_argument("--train-examples", type=int, default=3000)
    p.add_argument("--max-candidates", type=int, default=8)
    p.add_argument("--max-filler", type=int, default=8)
    p.add_argument("--no-global", action="store_true")
    p.add_argument("--window", type=int, default=32, help="full attention window")
    p.add_argument("--read-at", choices=["ent", "name"], default="ent")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--init-range", type=float, default=0.02)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


class Vocab:
    def __init__(self):
        self.ids = dict(SPECIAL)

    def __call__(self, word):
        return self.ids.setdefault(word, len(self.ids))


def names(rng, n, used):
    onsets = "b d f g k l m n p r s t v z br dr kr st tr sh".split()
    vowels = "a e i o u ai ou".split()
    out = []
    while len(out) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(2)) + rng.choice(["", "n", "r", "s"])
        if w not in used:
            used.add(w)
            out.append(w)
    return out


POOL = random.Random(5)
USED = set()
FIRST, LAST, CITY, COUNTRY = (names(POOL, n, USED) for n in (120, 160, 400, 60))


def fill(rng, template, p="", c="", k=""):
    return template.format(
        p=p, c=c, k=k, job=rng.choice("painter writer singer farmer".split()),
        thing=rng.choice("river market castle bridge".split()), n=rng.randint(2, 90),
        year=rng.randint(1700, 1990)).split()


def example(rng, hops, max_candidates, max_filler):
    k = rng.randint(2, max_candidates)
    countries, cities = rng.sample(COUNTRY, k), rng.sample(CITY, k)
    people = [f"{f} {l}" for f, l in zip(rng.sample(FIRST, k), rng.sample(LAST, k))]
    docs = []
    for i in range(k):
        if hops == 2:
            docs.append(fill(rng, rng.choice(BORN), p=people[i], c=cities[i]))
            docs.append(fill(rng, rng.choice(LOCATED), c=cities[i], k=countries[i]))
        else:
            docs.append(fill(rng, rng.choice(BORN), p=people[i], c=countries[i]))
    for _ in range(rng.randint(0, max_filler)):
        d = rng.randrange(len(docs))
        i = d // 2 if hops == 2 else d
        city_doc = hops == 2 and d % 2 == 1
        docs[d] += fill(rng, rng.choice(CITY_FILLER if city_doc else PERSON_FILLER), p=people[i], c=cities[i])
    rng.shuffle(docs)
    candidates = list(countries)
    rng.shuffle(candidates)
    subject = people[0].split() if hops > 0 else [countries[0]]
    return ["country", "of", "citizenship"] + subject, candidates, docs, candidates.index(countries[0])


def layout(ex, vocab):
    question, candidates, docs, answer = ex
    ids = [0, 5] + [vocab(w) for w in question] + [6]
    ent = []
    for c in candidates:
        ent.append(len(ids))
        ids += [7, vocab(c), 8]
    n_global = len(ids)
    for d in docs:
        ids += [2] + [vocab(w) for w in d] + [2]
    return {"ids": ids, "n_global": n_global, "ent": ent, "answer": answer}


def make(n, seed, vocab, hops, args):
    rng = random.Random(seed)
    return [layout(example(rng, hops[i % len(hops)], args.max_candidates, args.max_filler), vocab)
            for i in range(n)]


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    vocab = Vocab()
    train = make(args.train_examples, 1, vocab, [int(h) for h in args.hops.split(",")], args)
    devs = {h: make(300, 2 + int(h), vocab, [int(h)], args) for h in args.dev_hops.split(",")}
    for w in FIRST + LAST + CITY + COUNTRY:
        vocab(w)
    cfg = LongformerConfig(
        vocab_size=len(vocab.ids), hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=2 * args.hidden,
        max_position_embeddings=514, attention_window=[args.window] * args.layers, pad_token_id=1,
        initializer_range=args.init_range, hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout)
    encoder = LongformerModel(cfg, add_pooling_layer=False)
    head = torch.nn.Linear(args.hidden, 1, bias=False)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(
        (s + 1) / args.warmup, max(0.0, (args.steps - s) / (args.steps - args.warmup))))
    shift = 1 if args.read_at == "name" else 0

    def forward(rows):
        length = max(len(r["ids"]) for r in rows)
        n_cand = max(len(r["ent"]) for r in rows)
        ids = torch.ones(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        glob = torch.zeros_like(mask)
        pos = torch.zeros(len(rows), n_cand, dtype=torch.long)
        real = torch.zeros(len(rows), n_cand, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r["ids"])] = torch.tensor(r["ids"])
            mask[i, : len(r["ids"])] = 1
            if not args.no_global:
                glob[i, : r["n_global"]] = 1
            pos[i, : len(r["ent"])] = torch.tensor(r["ent"])
            real[i, : len(r["ent"])] = True
        answers = torch.tensor([r["answer"] for r in rows])
        hidden = encoder(input_ids=ids, attention_mask=mask, global_attention_mask=glob).last_hidden_state
        at = torch.gather(hidden, 1, (pos + shift).unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        logits = head(at).squeeze(-1).masked_fill(~real, -1e9)
        loss = torch.nn.functional.cross_entropy(logits, answers)
        return loss, (logits.argmax(-1) == answers).float().mean().item()

    for h, dev in devs.items():
        chance = sum(1 / len(r["ent"]) for r in dev) / len(dev)
        print(f"dev{h}: chance {chance:.3f}", flush=True)
    start, step, order = time.time(), 0, []
    while step < args.steps:
        if not order:
            order = list(range(len(train)))
            random.shuffle(order)
        rows = [train[order.pop()] for _ in range(min(args.batch, len(order)))]
        encoder.train()
        loss, _ = forward(rows)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % args.eval_every == 0:
            encoder.eval()
            report = []
            with torch.no_grad():
                for h, dev in devs.items():
                    accs = [forward(dev[i:i + 50])[1] for i in range(0, len(dev), 50)]
                    report.append(f"dev{h} {sum(accs) / len(accs):.3f}")
            print(f"step {step} loss {loss.item():.3f} {' '.join(report)} ({time.time() - start:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
