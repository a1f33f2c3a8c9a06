#!/usr/bin/env python3
"""An independent re-computation of `hermes mix` (docs/mix.md, the rules) for the tests.

`[stage2] min_candidates` (thin pools) merges a bucket's thin sub-buckets into one group
labelled `<bucket>.*` before any quota is computed.

It holds every row in memory and sorts, which `hermes mix` must not do, and follows the
contract's rules as written. Usage:

    mix_reference.py SPEC.toml CODES_DIR... > reference.json

Output: per group and per stage-1 bucket the quota, candidates, selected size and largest
copy count; the whole selection as {codes file: {row: copies}}; and the shortfall.
"""
import hashlib
import json
import math
import pathlib
import sys
import tomllib

import pyarrow.parquet as pq

EPS = 1e-9


def key_hash(seed, s):
    """First 8 bytes, big-endian, of sha256(le_u64(seed) || utf8(s))."""
    d = hashlib.sha256(seed.to_bytes(8, "little") + s.encode("utf-8")).digest()
    return int.from_bytes(d[:8], "big")


def reached(total, target):
    return total >= target - EPS * max(target, 1.0)


def largest_remainder(q, total):
    """Floors, then one more to the largest remainders (9 decimals; ties: earlier index)."""
    floors = [math.floor(x) for x in q]
    left = max(0, int(total) - sum(floors))
    order = sorted(range(len(q)), key=lambda i: (-round((q[i] - floors[i]) * 1e9), i))
    out = [float(f) for f in floors]
    for i in order[:left]:
        out[i] += 1.0
    return out


def water_level(quota, caps):
    """The real x with sum(min(x, a)) == quota (quota below sum(caps))."""
    left, k = quota, len(caps)
    for a in sorted(caps):
        if a * k <= left:
            left -= a
            k -= 1
        else:
            return left / k
    return max(caps)


def main():
    spec = tomllib.loads(pathlib.Path(sys.argv[1]).read_text())
    dirs = sorted(sys.argv[2:])
    seed = spec.get("seed", 0)
    d1 = spec["depth"]
    budget = float(spec["budget"])
    size_col = spec.get("size", "docs")
    docs = size_col == "docs"
    epochs = spec.get("max_epochs", 1)
    s1 = spec["stage1"]
    s2 = spec.get("stage2")
    d2 = (s2 or {}).get("depth", d1)
    qcol = (s2 or {}).get("quality")
    top = (s2 or {}).get("top", 1.0)
    min_cands = (s2 or {}).get("min_candidates", 0)

    files = []
    for i, d in enumerate(dirs):
        root = pathlib.Path(d) / "codes"
        for p in sorted(root.rglob("*.parquet")):
            rel = p.relative_to(root).as_posix()
            files.append((rel if len(dirs) == 1 else f"{i}/{rel}", p))
    files.sort()

    rows_of = {}  # group -> [rows]
    eligible = {}  # group -> [(order, size, file, row)]
    for fi, (name, path) in enumerate(files):
        t = pq.read_table(path).to_pydict()
        for i in range(len(t["row"])):
            code = tuple(t[f"c{l}"][i] for l in range(1, d2 + 1))
            rows_of[code] = rows_of.get(code, 0) + 1
            if docs:
                size = 1.0
            else:
                size = t[size_col][i]
                if size is None or not math.isfinite(size) or size < 0:
                    continue
                size = float(size)
            q = None
            if qcol is not None:
                q = t[qcol][i]
                if q is None or math.isnan(q):
                    continue
            order = (-(q + 0.0) if qcol else 0.0, key_hash(seed, t["id"][i]), fi, t["row"][i])
            eligible.setdefault(code, []).append((order, size, name, t["row"][i]))

    def choose(e):
        """A group's candidates from its eligible rows (rule 1)."""
        e = sorted(e)
        if qcol is not None and e:
            e = e[:math.ceil(top * len(e) - EPS)]
        return e

    # Thin pools: within each bucket, the sub-buckets with fewer than min_candidates
    # candidates (counted as rule 1 counts them, each on its own) become one group, the
    # bucket's code followed by "*", placed after the bucket's other groups; its rows are all
    # of theirs and its candidates are chosen again from them.
    subgroups = sorted(rows_of)
    buckets = sorted({g[:d1] for g in subgroups})
    members = {}
    pooled = {}  # merged group -> the sub-buckets it holds
    for b in buckets:
        subs = [g for g in subgroups if g[:d1] == b]
        thin = [g for g in subs if len(choose(eligible.get(g, []))) < min_cands]
        members[b] = [g for g in subs if g not in thin]
        if thin:
            pool = b + ("*",)
            pooled[pool] = thin
            rows_of[pool] = sum(rows_of[g] for g in thin)
            eligible[pool] = [r for g in thin for r in eligible.get(g, [])]
            members[b].append(pool)
    groups = [g for b in buckets for g in members[b]]
    cands = {g: choose(eligible.get(g, [])) for g in groups}
    n = [sum(r[1] for g in members[b] for r in cands[g]) for b in buckets]
    total = sum(n)
    method = s1["method"]
    if method == "natural":
        w = [x / total if total > 0 else 0.0 for x in n]
    elif method == "temperature":
        p = [x ** (1.0 / s1["temperature"]) for x in n]
        w = [x / sum(p) if sum(p) > 0 else 0.0 for x in p]
    elif method == "unimax":
        w = [0.0] * len(n)
        left = budget
        order = sorted(range(len(n)), key=lambda i: (n[i], buckets[i]))
        for k, i in enumerate(order):
            give = min(left / (len(n) - k), epochs * n[i])
            w[i] = give / budget if budget > 0 else 0.0
            left -= give
    else:
        labels = [".".join(map(str, b)) for b in buckets]
        listed = s1["weights"]
        rest = max(0.0, 1.0 - sum(listed.values()))
        unlisted = sum(x for l, x in zip(labels, n) if l not in listed)
        w = [listed[l] if l in listed else (rest * x / unlisted if unlisted > 0 else 0.0)
             for l, x in zip(labels, n)]

    caps = [epochs * x for x in n]
    q = [budget * x for x in w]
    capped = set()
    while True:
        over = [i for i in range(len(q)) if i not in capped and q[i] > caps[i] + EPS * max(caps[i], 1.0)]
        if not over:
            break
        excess = sum(q[i] - caps[i] for i in over)
        for i in over:
            q[i] = caps[i]
            capped.add(i)
        open_w = sum(w[i] for i in range(len(q)) if i not in capped)
        if open_w <= 0:
            break
        for i in range(len(q)):
            if i not in capped:
                q[i] += excess * w[i] / open_w
    if docs:
        q = largest_remainder(q, min(math.floor(sum(q) + EPS), int(budget)))
    shortfall = max(0.0, budget - sum(q))

    quota = {}
    for b, qb in zip(buckets, q):
        subs = [g for g in members[b] if cands[g]]
        if d2 == d1:
            for g in subs:
                quota[g] = qb
            continue
        ni = [sum(r[1] for r in cands[g]) for g in subs]
        if s2.get("rule", "coverage") == "coverage":
            a = [epochs * x for x in ni]
            if sum(a) <= qb + EPS:
                t = a
            elif docs:
                x = math.floor(water_level(qb, a) + EPS)
                assert sum(min(x, c) for c in a) <= qb + EPS < sum(min(x + 1, c) for c in a)
                t = [min(float(x), c) for c in a]
                left = round(qb - sum(t))
                open_ = sorted((i for i in range(len(a)) if a[i] > x),
                               key=lambda i: (key_hash(seed, ".".join(map(str, subs[i]))), i))
                for i in open_[:left]:
                    t[i] += 1.0
            else:
                x = water_level(qb, a)
                t = [min(x, c) for c in a]
        else:
            tot = sum(ni)
            t = [qb * x / tot if tot > 0 else 0.0 for x in ni]
            if docs:
                t = largest_remainder(t, math.floor(qb + EPS))
        for g, x in zip(subs, t):
            quota[g] = x

    selection = {name: {} for name, _ in files}
    out_groups = {}
    for g in groups:
        c_rows = cands[g]
        t = quota.get(g, 0.0)
        c = len(c_rows) if docs else sum(r[1] for r in c_rows)
        copies = [0] * len(c_rows)
        if c > 0 and t > 0:
            base = min(math.floor(t / c + EPS), epochs)
            copies = [base] * len(c_rows)
            left = t - base * c
            if base < epochs and left > EPS * max(t, 1.0):
                taken = 0.0
                for i, r in enumerate(c_rows):
                    copies[i] += 1
                    taken += 1.0 if docs else r[1]
                    if reached(taken, left):
                        break
        selected = 0.0
        for r, k in zip(c_rows, copies):
            if k > 0:
                selection[r[2]][str(r[3])] = k
            selected += k * r[1]
        out_groups[".".join(map(str, g))] = {
            "rows": rows_of[g],
            "candidates": len(c_rows),
            "size": sum(r[1] for r in c_rows),
            "quota": t,
            "selected_size": selected,
            "largest_copies": max(copies, default=0),
            "members": [".".join(map(str, m)) for m in pooled.get(g, [])],
        }
    json.dump({
        "groups": out_groups,
        "buckets": {".".join(map(str, b)): {"quota": qb, "share": wb} for b, qb, wb in zip(buckets, q, w)},
        "shortfall": shortfall,
        "selection": selection,
    }, sys.stdout)


if __name__ == "__main__":
    main()
