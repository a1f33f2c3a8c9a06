"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/seed-*), small and valid
or nearly so, so that the fuzzers start from the shapes hermes really reads. Run from the
repository root: python3 fuzz/make_seeds.py (needs pyarrow and zstandard, or skips those)."""
import gzip, io, json, os, struct

ROOT = "fuzz/corpus"

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

wiki = []
with open(".cache/data/wiki.jsonl") as f:
    for i, line in enumerate(f):
        if i >= 3:
            break
        d = json.loads(line)
        wiki.append({"id": d.get("id", str(i)), "text": d["text"][:200]})

# HTTP bodies
put("label_body", "one", json.dumps({"documents": [{"id": "a", "text": "A symphony."}], "depth": 2}))
put("label_body", "many", json.dumps({"documents": wiki, "encoder": "static"}))
put("label_body", "empty", json.dumps({"documents": []}))
put("label_body", "escapes", '{"documents":[{"text":"caf\\u00e9 \\ud83d\\ude00 \\ud800"}]}')
put("lookup_body", "ids", json.dumps({"ids": ["a", "b", "4711"], "depth": 1}))
put("lookup_body", "empty", json.dumps({"ids": []}))
put("lookup_body", "long", json.dumps({"ids": ["x" * 300]}))
# NDJSON: the first byte is the chunk size
lines = "\n".join(json.dumps(d) for d in wiki) + "\n"
put("ndjson_body", "lines", bytes([7]) + lines.encode())
put("ndjson_body", "crlf", bytes([1]) + b'{"text":"a"}\r\n\r\n{"id":1,"text":"b"}')
put("ndjson_body", "long", bytes([200]) + b'{"text":"' + b"y" * 700 + b'"}\n{"text":"z"}')
# Mixture specs
for name in sorted(os.listdir("examples/mixtures")):
    if name.endswith(".toml"):
        put("mix_spec", name, open(os.path.join("examples/mixtures", name)).read())
put("mix_spec", "tiny-temperature", 'depth = 1\nbudget = 1e6\n[stage1]\nmethod = "temperature"\ntemperature = 0.001\n')
put("mix_spec", "explicit", 'depth = 1\nbudget = 100\nsize = "tokens"\n[stage1]\nmethod = "explicit"\nweights = { "0" = 0.5, "1" = 0.5 }\n[stage2]\nrule = "proportional"\nquality = "q"\ntop = 0.3\n')
# A tiny bundle: manifest, codebooks (safetensors), cards, joined by NUL bytes
def safetensors(tensors):
    header, data = {}, b""
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data
manifest = json.load(open("models/minilm-wiki/manifest.json"))
manifest["encoder"]["dim"] = 4
manifest["transform"].update({"in_dim": 4, "out_dim": 2})
manifest["levels"] = [2, 2]
manifest["probes"] = manifest["probes"][:1]
manifest.pop("static", None)
books = safetensors([
    ("transform.mean", [4], [0.0] * 4),
    ("transform.matrix", [2, 4], [1, 0, 0, 0, 0, 1, 0, 0]),
    ("codebook.1", [2, 2], [1, 0, -1, 0]),
    ("codebook.2", [2, 2], [0, 1, 0, -1]),
])
cards = {"fingerprint": manifest["fingerprint"], "encoder": "minilm", "docs": 2, "cards": [
    {"label": "0", "depth": 1, "docs": 1, "share": 0.5, "share_of_parent": 0.5,
     "terms": [{"term": "music", "score": 0.1}], "exemplars": [{"id": "1", "text": "x"}], "children": ["0.1"]},
    {"label": "0.1", "depth": 2, "docs": 1, "share": 0.5, "share_of_parent": 1.0,
     "terms": [], "exemplars": [], "children": []}]}
put("bundle_files", "tiny", json.dumps(manifest).encode() + b"\0" + books + b"\0" + json.dumps(cards).encode())
put("bundle_files", "manifest-only", json.dumps(manifest))
# Corpus files: the first byte is the format (0 JSONL, 1 gzip, 2 zstd, 3 Parquet)
jsonl = "".join(json.dumps(dict(d, quality=0.5, lang="en")) + "\n" for d in wiki).encode()
put("corpus_file", "jsonl", b"\0" + jsonl)
put("corpus_file", "python-json", b"\0" + b'\xef\xbb\xbf{"text":"a","quality":NaN}\n\n{"text":"b","id":7,"lang":null,"quality":-Infinity}\n')
put("corpus_file", "gzip", b"\1" + gzip.compress(jsonl))
try:
    import zstandard
    put("corpus_file", "zstd", b"\2" + zstandard.ZstdCompressor().compress(jsonl))
except ImportError:
    import subprocess
    put("corpus_file", "zstd", b"\2" + subprocess.run(["zstd", "-c"], input=jsonl, capture_output=True, check=True).stdout)
try:
    import pyarrow as pa, pyarrow.parquet as pq
    t = pa.table({"id": [d["id"] for d in wiki], "text": [d["text"] for d in wiki],
                  "quality": [0.1, None, 0.9], "lang": ["en", "fr", None]})
    b = io.BytesIO()
    pq.write_table(t, b)
    put("corpus_file", "parquet", b"\3" + b.getvalue())
except ImportError:
    print("no pyarrow: Parquet seed skipped")
# Stream records
put("stream_record", "doc", json.dumps(wiki[0])[:300])
put("stream_record", "int-id", '{"id": 42, "text": "short"}')
put("stream_record", "no-id", '{"text": "no id"}')
put("stream_record", "bad", '{"text": 5}')
# Source and sink URLs: the first byte is the role (even: source, odd: sink)
for i, (role, url) in enumerate([
    (0, "kafka://127.0.0.1:9092/documents?group=hermes"),
    (1, "kafka://127.0.0.1:9092/codes?linger.ms=20&compression.type=lz4"),
    (0, "redis://127.0.0.1:6379/0/documents?group=hermes&consumer=a&claim-idle-ms=100"),
    (1, "redis://user:pw@localhost:6379/2/codes"),
    (0, "kafka://[::1]:99999/x?group=g"),
]):
    put("endpoint_url", str(i), bytes([role]) + url.encode())
