#!/usr/bin/env python3
"""Mixture search end to end with a small but real proxy (docs/search.md, "A whole loop").

The wiki corpus is split: every 10th article is held out, the rest is labeled with token
counts (`hermes label --count-tokens`, the bundle's own tokenizer). A depth-1 swarm is drawn
and selected (`hermes swarm --select`); for every variant a unigram language model is fitted on
the selected texts (copies counted) and its bits per byte measured on the held-out articles of a
few topics: those are the metrics. `hermes fit-mix` fits the mixing law and proposes weights;
`hermes mix` builds the proposal and the natural mixture, whose proxies are trained and measured
the same way. Then the proposal is pinned and a depth-2 swarm refines inside it.

The proxy: words are `\\w+` runs and single punctuation marks, lower-cased; a word's
probability is (count + a · spell(word)) / (N + a), where spell is a geometric model over byte
strings (each byte 1/257, then the end), so unseen words get mass and every held-out byte is
paid for. Bits per byte = -sum(log2 p) / UTF-8 bytes of the held-out texts.

Usage: search_loop.py --hermes BIN --work DIR [--variants N] [--refine N] [--budget-share F]
Writes DIR/report.md and DIR/report.json; exits 1 when the proposal does not beat the swarm's
median variant on the objective (whether it beats the natural mixture is reported: with this
proxy it does at the default settings, not at every swarm size; docs/search.md).
"""
import argparse
import collections
import csv
import json
import math
import pathlib
import re
import subprocess
import sys
import tomllib

import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORD = re.compile(r"\w+|[^\w\s]")
ALPHA = 100.0


def run(*args):
    p = subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, args[:2]))} failed:\n{p.stderr}")
    return p


def words(text):
    return WORD.findall(text.lower())


def spell_log2(w):
    return -(len(w.encode("utf-8")) + 1) * math.log2(257.0)


class Unigram:
    def __init__(self, counts):
        self.counts = counts
        self.n = sum(counts.values())

    def bits_per_byte(self, texts):
        bits, nbytes = 0.0, 0
        for t in texts:
            nbytes += len(t.encode("utf-8"))
            for w in words(t):
                p = (self.counts.get(w, 0) + ALPHA * 2.0 ** spell_log2(w)) / (self.n + ALPHA)
                bits -= math.log2(p)
        return bits / nbytes


class Corpus:
    """The labeled training articles: codes file name -> row -> word counts."""

    def __init__(self, inputs):
        self.rows = {}
        for f in sorted(inputs.glob("*.jsonl")):
            self.rows[f.name + ".parquet"] = [
                collections.Counter(words(json.loads(line)["text"])) for line in f.open()
            ]

    def model(self, selection_dir):
        counts = collections.Counter()
        for f in sorted(selection_dir.glob("*.parquet")):
            t = pq.read_table(f, columns=["row", "copies"]).to_pydict()
            rows = self.rows[f.name]
            for r, k in zip(t["row"], t["copies"]):
                for w, c in rows[r].items():
                    counts[w] += c * k
        return Unigram(counts)


def split(work, topics):
    """Every 10th article held out; the rest in 4 input files."""
    wiki = (ROOT / ".cache/data/wiki.jsonl").read_text().splitlines()
    inputs = work / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    parts = [[] for _ in range(4)]
    held = collections.defaultdict(list)
    for i, line in enumerate(wiki):
        o = json.loads(line)
        if i % 10 == 0:
            if o["label"] in topics:
                held[o["label"]].append(o["text"])
        else:
            parts[i % 4].append(line)
    for k, p in enumerate(parts):
        (inputs / f"part-{k}.jsonl").write_text("\n".join(p) + "\n")
    return inputs, held


def metric_name(topic):
    return "bpb_" + re.sub(r"\W+", "_", topic.lower()).strip("_")


def measure(corpus, held, selection_dir):
    m = corpus.model(selection_dir)
    return {metric_name(t): m.bits_per_byte(texts) for t, texts in sorted(held.items())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hermes", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--variants", type=int, default=96)
    ap.add_argument("--refine", type=int, default=24)
    ap.add_argument("--budget-share", type=float, default=0.25)
    ap.add_argument("--holdout", type=int, default=12)
    ap.add_argument("--kl", type=float, default=0.1)
    ap.add_argument("--topics", default="Mathematics,Physical sciences,Philosophy and religion")
    a = ap.parse_args()
    hermes, work = a.hermes, pathlib.Path(a.work)
    topics = a.topics.split(",")
    work.mkdir(parents=True, exist_ok=True)

    inputs, held = split(work, set(topics))
    labeled = work / "labeled"
    run(hermes, "label", "--input", inputs, "--out", labeled, "--encoder", "static",
        "--count-tokens", ROOT / "models/minilm-wiki/tokenizer.json")
    total = sum(sum(pq.read_table(f, columns=["tokens"])["tokens"].to_pylist())
                for f in (labeled / "codes").glob("*.parquet"))
    budget = int(a.budget_share * total)
    base = work / "base.toml"
    base.write_text(f'seed = 0\ndepth = 1\nbudget = {budget}\nsize = "tokens"\nmax_epochs = 2\n'
                    '[stage1]\nmethod = "natural"\n')
    corpus = Corpus(inputs)

    # 1. The depth-1 swarm, its proxies and their metrics.
    swarm = work / "swarm"
    run(hermes, "swarm", "--codes", labeled, "--spec", base, "--variants", a.variants,
        "--out", swarm, "--select")
    ratios = list(csv.DictReader((swarm / "ratios.csv").open()))
    rows = []
    for r in ratios:
        m = measure(corpus, held, swarm / "variants" / r["name"] / "selection")
        rows.append({"run": r["run"], **m})
    metrics = work / "metrics.csv"
    with metrics.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    # 2. Fit, propose, and build the proposal and the natural mixture.
    fit = work / "fit"
    run(hermes, "fit-mix", "--swarm", swarm, "--metrics", metrics, "--out", fit,
        "--holdout", a.holdout, "--kl", a.kl)
    results = {}
    for name, spec in [("natural", base), ("proposed", fit / "optimal.toml")]:
        out = work / f"mix-{name}"
        run(hermes, "mix", "--codes", labeled, "--spec", spec, "--out", out)
        results[name] = measure(corpus, held, out / "selection")
    fitted = json.loads((fit / "fit.json").read_text())
    best_variant = min(rows, key=lambda r: sum(v for k, v in r.items() if k != "run"))

    # 3. Pin the proposal and refine inside it at depth 2.
    weights = tomllib.loads((fit / "optimal.toml").read_text())["stage1"]["weights"]
    pin = work / "pin.toml"
    pin.write_text("weights = { " + ", ".join(f'"{k}" = {v!r}' for k, v in weights.items()) + " }\n")
    base2 = work / "base2.toml"
    base2.write_text(base.read_text().replace("depth = 1", "depth = 2"))
    refine = work / "refine"
    run(hermes, "swarm", "--codes", labeled, "--spec", base2, "--variants", a.refine,
        "--out", refine, "--pin", pin, "--select")
    refined = []
    for r in csv.DictReader((refine / "ratios.csv").open()):
        refined.append({"run": r["run"], **measure(corpus, held, refine / "variants" / r["name"] / "selection")})

    def objective(m):
        return sum(v for k, v in m.items() if k != "run") / len(held)

    report = {
        "budget_tokens": budget,
        "variants": a.variants,
        "topics": {metric_name(t): len(v) for t, v in sorted(held.items())},
        "fit": {m: {k: f[k] for k in ("r2", "holdout") if k in f} for m, f in fitted["metrics"].items()}
        if "metrics" in fitted else fitted,
        "natural": results["natural"],
        "proposed": results["proposed"],
        "objective": {
            "natural": objective(results["natural"]),
            "proposed": objective(results["proposed"]),
            "best_variant": objective(best_variant),
            "swarm_median": sorted(objective(r) for r in rows)[len(rows) // 2],
            "refined_best": min(objective(r) for r in refined),
            "refined_median": sorted(objective(r) for r in refined)[len(refined) // 2],
        },
    }
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Mixture search on the wiki corpus: a unigram proxy, bits per byte (lower is better)", "",
             f"Budget {budget} tokens (the bundle's WordPiece), {a.variants} depth-1 variants, "
             f"{a.refine} depth-2 variants inside the pinned proposal.", "",
             "| metric | natural | proposed |", "|---|---|---|"]
    for k in sorted(results["natural"]):
        lines.append(f"| {k} | {results['natural'][k]:.4f} | {results['proposed'][k]:.4f} |")
    o = report["objective"]
    lines += ["", "| objective (mean) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in o.items()]
    (work / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not o["proposed"] < o["swarm_median"]:
        sys.exit("the proposal does not beat the swarm's median variant")


if __name__ == "__main__":
    main()
