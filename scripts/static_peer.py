#!/usr/bin/env python3
"""The static tier's peer for benches/static_tier.rs: model2vec's StaticModel built from a
hermes bundle's own token table (static.safetensors) and tokenizer (tokenizer.json), then the
bundle's transform and greedy residual quantizer in numpy, on texts already in memory.

Usage: static_peer.py BUNDLE OUT.json INPUT.jsonl... [--codes DIR]

Reads every input's "text" (outside the timing), then times one pass: StaticModel.encode
(HF tokenizers, mean of table rows, L2 normalisation; max_length 512 as the static tier),
z = W (e - mean), and per level the nearest codeword of the residual. Writes
{"docs", "seconds"} to OUT.json; with --codes DIR (hermes' codes/*.parquet of the same
inputs, in the same sorted order), also the share of documents whose codes agree at each
depth.
"""

import json
import sys
import time

import numpy as np
from model2vec import StaticModel
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def main() -> None:
    args = sys.argv[1:]
    codes_dir = None
    if "--codes" in args:
        k = args.index("--codes")
        codes_dir = args[k + 1]
        del args[k : k + 2]
    if len(args) < 3:
        sys.exit(__doc__)
    bundle, out, inputs = args[0], args[1], sorted(args[2:])
    manifest = json.load(open(f"{bundle}/manifest.json"))
    texts = []
    for path in inputs:
        with open(path, encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f)

    # The bundle's tokenizer.json pads and truncates to 128 for MiniLM; the static tier does
    # neither (model2vec sets its own truncation from max_length).
    tok = Tokenizer.from_file(f"{bundle}/tokenizer.json")
    tok.no_padding()
    tok.no_truncation()
    # hermes keeps the stored f16 table and sums each row into f32; model2vec takes the table
    # as f32 (the same values) and sums in f32.
    table = load_file(f"{bundle}/{manifest['static']['file']}")["static.table"].astype(np.float32)
    max_tokens = manifest["static"]["max_tokens"]
    model = StaticModel(table, tok, normalize=True, max_length=max_tokens)
    books = load_file(f"{bundle}/{manifest['codebooks']['file']}")
    mean = books["transform.mean"]
    matrix = books["transform.matrix"]
    levels = [books[f"codebook.{i + 1}"] for i in range(len(manifest["levels"]))]
    sq = [(b * b).sum(axis=1) for b in levels]

    print(f"loaded {len(texts)} texts", file=sys.stderr, flush=True)
    started = time.perf_counter()
    e = model.encode(texts, max_length=max_tokens).astype(np.float32)
    r = (e - mean) @ matrix.T
    codes = []
    for book, norms in zip(levels, sq):
        k = np.argmin(norms[None, :] - 2.0 * (r @ book.T), axis=1)
        codes.append(k)
        r = r - book[k]
    seconds = time.perf_counter() - started

    result = {"docs": len(texts), "seconds": seconds}
    if codes_dir is not None:
        import pyarrow.parquet as pq

        names = [p.rsplit("/", 1)[-1] for p in inputs]
        hermes = []
        for name in names:
            t = pq.read_table(f"{codes_dir}/{name}.parquet").sort_by("row")
            hermes.append(np.stack([t[f"c{i + 1}"].to_numpy() for i in range(len(levels))], 1))
        hermes = np.concatenate(hermes)
        peer = np.stack(codes, 1)
        if hermes.shape != peer.shape:
            sys.exit(f"hermes coded {hermes.shape[0]} documents, the peer {peer.shape[0]}")
        same = np.ones(len(peer), dtype=bool)
        agree = []
        for d in range(len(levels)):
            same &= hermes[:, d] == peer[:, d]
            agree.append(float(same.mean()))
        result["agree"] = agree
    json.dump(result, open(out, "w"))


if __name__ == "__main__":
    main()
