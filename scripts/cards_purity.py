#!/usr/bin/env python3
"""How well the bundle's depth-1 cards name their buckets, on the wiki corpus: for each
depth-1 bucket, the share of its documents whose topic (the corpus's `label` field) is the
bucket's majority topic, beside the majority topic and the card's top terms. Markdown on
stdout (the table in docs/cards.md).

    cards_purity.py BUNDLE_DIR WIKI_JSONL WIKI_NPY

WIKI_NPY: the corpus's minilm embeddings in corpus order (`make bundle` or
`hermes fit --save-embeddings` writes them); codes are recomputed here from the bundle's
codebooks (transform, then the nearest level-1 codeword).
"""
import collections
import json
import struct
import sys

import numpy as np


def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(t["shape"])
    return out


def main():
    bundle, wiki, npy = sys.argv[1:4]
    t = tensors(f"{bundle}/codebooks.safetensors")
    e = np.load(npy)
    z = (e - t["transform.mean"]) @ t["transform.matrix"].T
    book = t["codebook.1"]
    d = (z * z).sum(1, keepdims=True) - 2 * z @ book.T + (book * book).sum(1)
    c1 = d.argmin(1)
    topics = [json.loads(l).get("label") or "" for l in open(wiki)]
    cards = json.load(open(f"{bundle}/cards.json"))
    terms = {c["label"]: [x["term"] for x in c["terms"][:6]] for c in cards["cards"] if c["depth"] == 1}
    by = collections.defaultdict(collections.Counter)
    for c, topic in zip(c1, topics):
        by[int(c)][topic] += 1
    rows, total_major = [], 0
    for b in sorted(by):
        n = sum(by[b].values())
        topic, k = by[b].most_common(1)[0]
        total_major += k
        rows.append((b, n, topic, k / n, ", ".join(terms.get(str(b), []))))
    print("| bucket | docs | majority topic | its share | top terms (card) |")
    print("|---|---|---|---|---|")
    for b, n, topic, share, words in rows:
        print(f"| {b} | {n} | {topic} | {share:.2f} | {words} |")
    print(f"\nDocument-weighted majority share over all buckets: {total_major / len(topics):.3f}")


if __name__ == "__main__":
    main()
