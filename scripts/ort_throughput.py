"""Python onnxruntime on a bundle's encoder.onnx: docs/s on wiki texts, for `make bench`.

Usage: ort_throughput.py BUNDLE_DIR TEXTS_JSONL SECONDS [--processes P] [--threads T]
       [--batch B[,B...]]

Prints one line per batch size, `B DOCS_PER_S DOCS_PER_CPU_S`: documents per second of all P
processes together, and documents per CPU-second they used (robust to a shared machine's load),
each running its own session of T intra-op threads on batches of B texts for SECONDS
(defaults: 1 process, 0 threads = ONNX Runtime's choice, batch 32). This is the service
bench's Python ceiling in any layout: one process per core with one thread each, or one
process with every core. Every process tokenizes (truncated at 256 tokens) the texts in chunks
of 256, sorts each chunk by length and cuts it into batches, as the Rust ceiling does; its
session has Python's default options (CPU arena and memory pattern on, threads spinning),
graph optimisation "all". The processes start each batch size's timed window together (a
barrier) and each times itself; the figure is the sum of their rates.
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import time

import numpy as np


def run(bundle, texts, seconds, threads, batches, offset, barrier, results):
    # One tokenizer thread per process: the processes are the parallelism.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{bundle}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(f"{bundle}/encoder.onnx", opts, providers=["CPUExecutionProvider"])

    def encode(ids):
        n, seq = len(ids), max(len(x) for x in ids)
        input_ids = np.zeros((n, seq), dtype=np.int64)
        mask = np.zeros((n, seq), dtype=np.int64)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = x
            mask[r, : len(x)] = 1
        sess.run(None, {"input_ids": input_ids, "attention_mask": mask,
                        "token_type_ids": np.zeros_like(input_ids)})

    encode([tok.encode(texts[0]).ids])
    rng = random.Random(offset)
    i = offset
    for batch in batches:
        barrier.wait()
        docs, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            chunk = [texts[(i + k) % len(texts)] for k in range(256)]
            i += 256
            ids = sorted((e.ids for e in tok.encode_batch(chunk)), key=len)
            cut = [ids[b : b + batch] for b in range(0, len(ids), batch)]
            # The clock is read after every batch, so a phase lasts `seconds`, not whole
            # chunks; the batches run in a shuffled order, so a phase cut short is not the
            # chunk's shortest texts.
            rng.shuffle(cut)
            for b in cut:
                encode(b)
                docs += len(b)
                if time.perf_counter() - start >= seconds:
                    break
        cpu = time.process_time() - cpu
        results.put((batch, docs / (time.perf_counter() - start), docs, cpu))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("bundle")
    p.add_argument("texts")
    p.add_argument("seconds", type=float)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch", default="32", help="batch sizes, comma-separated")
    a = p.parse_args()
    try:
        batches = [int(b) for b in a.batch.split(",")]
    except ValueError:
        raise SystemExit(f"--batch {a.batch!r}: expected sizes like 1,4,8")
    if a.processes < 1 or a.threads < 0 or min(batches) < 1:
        raise SystemExit("--processes and every --batch must be at least 1, --threads at least 0")
    texts = [json.loads(line)["text"] for line in open(a.texts, encoding="utf-8")]
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(a.processes), ctx.Queue()
    # Each process starts at another place in the texts, as the Rust ceiling's callers take
    # different texts from one shared sequence.
    procs = [
        ctx.Process(target=run, args=(a.bundle, texts, a.seconds, a.threads, batches,
                                      k * len(texts) // a.processes, barrier, results))
        for k in range(a.processes)
    ]
    for proc in procs:
        proc.start()
    # A process that died (out of memory, a bad graph) must not hang the bench.
    rates, docs, cpu = {}, {}, {}
    for _ in range(len(procs) * len(batches)):
        batch, rate, n, seconds = results.get(timeout=a.seconds + 300)
        rates[batch] = rates.get(batch, 0.0) + rate
        docs[batch] = docs.get(batch, 0) + n
        cpu[batch] = cpu.get(batch, 0.0) + seconds
    for proc in procs:
        proc.join()
    for batch in batches:
        print(f"{batch} {rates[batch]:.2f} {docs[batch] / max(cpu[batch], 1e-9):.2f}")


if __name__ == "__main__":
    main()
