"""Python onnxruntime on a bundle's encoder.onnx: docs/s on wiki texts, for `make bench`.

Usage: ort_throughput.py BUNDLE_DIR WIKI_JSONL SECONDS. Prints one number (docs/s).
Same texts as the Rust ceiling (truncated at 256 tokens), sorted by length in chunks of 256
and cut into batches of 32, default session options, graph optimisation "all".
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main() -> None:
    bundle, corpus, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    tok = Tokenizer.from_file(f"{bundle}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(f"{bundle}/encoder.onnx", opts, providers=["CPUExecutionProvider"])
    docs, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = [texts[(i + k) % len(texts)] for k in range(256)]
        i += 256
        ids = sorted((e.ids for e in tok.encode_batch(chunk)), key=len)
        for b in range(0, len(ids), 32):
            batch = ids[b : b + 32]
            n, seq = len(batch), max(len(x) for x in batch)
            input_ids = np.zeros((n, seq), dtype=np.int64)
            mask = np.zeros((n, seq), dtype=np.int64)
            for r, x in enumerate(batch):
                input_ids[r, : len(x)] = x
                mask[r, : len(x)] = 1
            sess.run(None, {"input_ids": input_ids, "attention_mask": mask,
                            "token_type_ids": np.zeros_like(input_ids)})
        docs += len(ids)
    print(f"{docs / (time.perf_counter() - start):.2f}")


if __name__ == "__main__":
    main()
