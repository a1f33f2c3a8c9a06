#!/usr/bin/env python3
"""Build `encoder.onnx` for a BERT sentence encoder from its safetensors weights.

Uses only numpy and the `onnx` package (no torch, no transformers): the graph is
written op by op, the weights are read straight from the safetensors file.  The
result is byte-for-byte reproducible: same inputs, same bytes.

Graph contract (what `src/encoder/` relies on):
  inputs  input_ids, attention_mask, token_type_ids   int64 [batch, seq]
  output  sentence_embedding                          f32   [batch, hidden]
          mean over the tokens where attention_mask == 1, then L2-normalised.

Usage: export_encoder.py MODEL_DIR OUT.onnx
  MODEL_DIR holds model.safetensors and config.json (a sentence-transformers
  checkpoint such as all-MiniLM-L6-v2).
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def load_safetensors(path: Path) -> dict:
    """Parse the safetensors container: u64 header length, JSON header, raw data."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start : base + end], dtype=DTYPES[info["dtype"]])
        tensors[name] = arr.reshape(info["shape"]).astype(np.float32, copy=False) if info["dtype"] != "I64" else arr
    return tensors


class Graph:
    """Small helper that names nodes deterministically and collects initializers."""

    def __init__(self, weights: dict):
        self.w = weights
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, value) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, key: str, transpose: bool = False) -> str:
        arr = self.w[key]
        if transpose:
            arr = np.ascontiguousarray(arr.T)
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), key + (".T" if transpose else "")))
        return key + (".T" if transpose else "")

    def op(self, op_type: str, inputs, hint=None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def linear(self, x: str, prefix: str) -> str:
        y = self.op("MatMul", [x, self.weight(prefix + ".weight", transpose=True)])
        return self.op("Add", [y, self.weight(prefix + ".bias")])

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")],
            axis=-1,
            epsilon=eps,
        )


def build(model_dir: Path) -> onnx.ModelProto:
    cfg = json.loads((model_dir / "config.json").read_text())
    w = load_safetensors(model_dir / "model.safetensors")
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(cfg["layer_norm_eps"])
    assert cfg.get("hidden_act", "gelu") == "gelu", "only exact (erf) GELU is supported"
    g = Graph(w)

    # Embeddings. Positions are a Slice of the table, not Gather(Range): ONNX Runtime's
    # level-2 optimiser rewrites the Gather(Range) pattern incorrectly.
    seq_len = g.op("Slice", [g.op("Shape", ["input_ids"]), g.const("one", np.array([1], np.int64)), g.const("two", np.array([2], np.int64))])
    pos = g.op("Slice", [g.weight("embeddings.position_embeddings.weight"), g.const("zero", np.array([0], np.int64)), seq_len, g.const("axis0", np.array([0], np.int64))])
    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), "input_ids"], axis=0)
    types = g.op("Gather", [g.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], axis=0)
    x = g.op("Add", [g.op("Add", [words, types]), pos])
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)

    # Additive attention bias: 0 for real tokens, a large negative for padding.
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inv = g.op("Sub", [g.const("onef", np.array(1.0, np.float32)), mask_f])
    bias = g.op("Mul", [inv, g.const("neg", np.array(-3.4028234663852886e38 / 2, np.float32))])
    bias = g.op("Unsqueeze", [bias, g.const("axes12", np.array([1, 2], np.int64))])  # [B,1,1,S]

    split_shape = g.const("split", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = g.const("merge", np.array([0, 0, hidden], np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    sqrt2 = g.const("sqrt2", np.array(np.sqrt(2.0), np.float32))
    half = g.const("half", np.array(0.5, np.float32))
    onef = g.const("one_f", np.array(1.0, np.float32))

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.query"), split_shape])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.key"), split_shape])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [g.linear(x, p + ".attention.self.value"), split_shape])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        probs = g.op("Softmax", [scores], axis=-1)
        ctx = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_shape])
        attn = g.linear(ctx, p + ".attention.output.dense")
        x = g.layer_norm(g.op("Add", [attn, x]), p + ".attention.output.LayerNorm", eps)
        h = g.linear(x, p + ".intermediate.dense")
        # Exact GELU: 0.5 * h * (1 + erf(h / sqrt(2))). ONNX Runtime fuses this pattern.
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), onef])])
        out = g.linear(h, p + ".output.dense")
        x = g.layer_norm(g.op("Add", [out, x]), p + ".output.LayerNorm", eps)

    # Mean pooling over real tokens, then L2 normalisation (sentence-transformers semantics).
    m3 = g.op("Unsqueeze", [mask_f, g.const("axes2", np.array([2], np.int64))])
    axes1 = g.const("axes1", np.array([1], np.int64))
    summed = g.op("ReduceSum", [g.op("Mul", [x, m3]), axes1], keepdims=0)
    count = g.op("Clip", [g.op("ReduceSum", [m3, axes1], keepdims=0), g.const("min_count", np.array(1e-9, np.float32))])
    mean = g.op("Div", [summed, count])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [mean, mean]), axes1], keepdims=1)])
    norm = g.op("Clip", [norm, g.const("min_norm", np.array(1e-12, np.float32))])
    out = g.op("Div", [mean, norm], hint="normalised")
    g.nodes.append(helper.make_node("Identity", [out], ["sentence_embedding"], name="sentence_embedding"))

    ids = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hermes-export", producer_version="1")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model = build(Path(sys.argv[1]))
    out = Path(sys.argv[2])
    tmp = out.with_suffix(".onnx.tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(out)


if __name__ == "__main__":
    main()
