#!/usr/bin/env python3
"""The peer of `hermes mix` in benches/mix.rs: the same mixture as ONE DuckDB query.

The shape is the bench's spec (docs/mix.md): stage 1 by temperature over the prefixes at depth
1 (`c1`), stage 2 `proportional` over depth 2 (`c1`, `c2`) with a quality top fraction, sizes
from a numeric column. Everything the rules say is in the query:

- rule 1: rows with a null or non-finite/negative size or a null/NaN quality are not
  candidates; a group's candidates are its `max(1, ceil(top * r - 1e-9))` first rows in the
  candidate order (quality descending, then the row key, the file's index, the row);
- the row key is hermes' documented one: the first 8 bytes, big-endian, of
  sha256(le_u64(seed) || id), computed by DuckDB's sha256() over a BLOB;
- rules 2-3: temperature shares `n_b^(1/T) / sum n^(1/T)`, quotas capped at
  `max_epochs * n_b` with what caps remove handed to the uncapped buckets in proportion to
  their shares, repeatedly (a recursive CTE);
- rule 4 proportional: `t_i = Q_b * n_i / n_b`;
- rule 5: `floor(t / c + 1e-9)` copies (at most max_epochs) for all, one more for the rows
  before the crossing row and the crossing row itself (a running sum over the same order).

It writes the selection (`file`, `id`, `row`, `copies`) to one Parquet file and prints JSON:
the query's seconds (the DuckDB time the bench reports: without Python's start), the
process's peak RSS right after the query, and the selected rows and copies.
With `--check DIR` (a `hermes mix --out`), it also counts the rows on which the two
selections differ (file, row, copies), after the timed query.

With `--key hash` the row key is DuckDB's own hash(seed, id) instead (no cross-check: another
order selects other rows, of about the same number and size): what the query costs without
hermes' sha256 key.

Usage: mix_duckdb.py --codes DIR --out FILE --threads N --seed S --budget B --size COL
                     --max-epochs E --temperature T --quality COL --top F
                     [--key sha256|hash] [--check DIR]
"""
import argparse
import json
import pathlib
import resource
import time

import duckdb


def query(files, seed, budget, size, epochs, temperature, quality, top, out, key):
    seed_blob = "".join("\\x%02X" % b for b in seed.to_bytes(8, "little"))
    if key == "sha256":
        key_sql = f"('0x' || substr(sha256('{seed_blob}'::BLOB || encode(id)), 1, 16))::UBIGINT"
    else:
        # DuckDB's own 64-bit hash: not hermes' key, so another (as random) order of rows.
        key_sql = f"hash({seed}, id)"
    file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    return f"""
COPY (
WITH RECURSIVE src AS (
  SELECT list_position({file_list}, filename) - 1 AS fi, filename AS f, "row" AS r, id, c1, c2,
         CAST("{size}" AS DOUBLE) AS size, CAST("{quality}" AS DOUBLE) AS q
  FROM read_parquet({file_list}, filename = true)
),
ordered AS MATERIALIZED (
  SELECT f, r, id, c1, c2, size,
    row_number() OVER w AS rn,
    count(*) OVER (PARTITION BY c1, c2) AS n_rows,
    coalesce(sum(size) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
  FROM (
    SELECT *, {key_sql} AS key
    FROM src
    WHERE size IS NOT NULL AND isfinite(size) AND size >= 0 AND q IS NOT NULL AND NOT isnan(q)
  )
  WINDOW w AS (PARTITION BY c1, c2 ORDER BY q DESC, key, fi, r)
),
cand AS MATERIALIZED (
  SELECT * FROM ordered WHERE rn <= greatest(1, ceil({top} * n_rows - 1e-9))
),
grp AS (SELECT c1, c2, sum(size) AS n_i FROM cand GROUP BY c1, c2),
bucket AS (SELECT c1, sum(n_i) AS n_b FROM grp GROUP BY c1),
shares AS (
  SELECT c1, n_b, pow(n_b, 1.0 / {temperature}) / sum(pow(n_b, 1.0 / {temperature})) OVER () AS w
  FROM bucket
),
capping(it, c1, n_b, w, cap, quota, capped) AS (
  SELECT 0, c1, n_b, w, {epochs} * n_b, {budget} * w, false FROM shares
  UNION ALL
  SELECT it + 1, c1, n_b, w, cap,
    CASE WHEN now THEN (CASE WHEN capped THEN quota ELSE cap END)
         ELSE quota + CASE WHEN open > 0 THEN excess * w / open ELSE 0 END END,
    now
  FROM (
    SELECT *,
      sum(CASE WHEN now AND NOT capped THEN quota - cap ELSE 0 END) OVER () AS excess,
      sum(CASE WHEN now THEN 0 ELSE w END) OVER () AS open
    FROM (
      SELECT *, capped OR quota > cap + 1e-9 * greatest(cap, 1) AS now
      FROM capping WHERE it < (SELECT count(*) FROM shares)
    )
  )
),
quota AS (SELECT c1, n_b, quota FROM capping WHERE it = (SELECT count(*) FROM shares)),
target AS (
  SELECT g.c1, g.c2, g.n_i, b.quota * g.n_i / b.n_b AS t
  FROM grp g JOIN quota b USING (c1)
  WHERE g.n_i > 0 AND b.n_b > 0
),
copies AS (
  SELECT c1, c2, t, least(floor(t / n_i + 1e-9), {epochs}) AS base, n_i FROM target WHERE t > 0
),
extra AS (
  SELECT c1, c2, base,
    CASE WHEN base < {epochs} AND t - base * n_i > 1e-9 * greatest(t, 1)
         THEN t - base * n_i ELSE NULL END AS left_
  FROM copies
)
SELECT c.f AS file, c.id, c.r AS "row",
  CAST(e.base + CASE WHEN e.left_ IS NOT NULL
                      AND c.before < e.left_ - 1e-9 * greatest(e.left_, 1) THEN 1 ELSE 0 END
       AS USMALLINT) AS copies
FROM cand c JOIN extra e USING (c1, c2)
WHERE e.base > 0 OR (e.left_ IS NOT NULL AND c.before < e.left_ - 1e-9 * greatest(e.left_, 1))
) TO '{out}' (FORMAT parquet)
"""


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--codes", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--threads", type=int, required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--budget", type=float, required=True)
    a.add_argument("--size", required=True)
    a.add_argument("--max-epochs", type=int, required=True)
    a.add_argument("--temperature", type=float, required=True)
    a.add_argument("--quality", required=True)
    a.add_argument("--top", type=float, required=True)
    a.add_argument("--key", choices=["sha256", "hash"], default="sha256")
    a.add_argument("--check")
    args = a.parse_args()
    root = pathlib.Path(args.codes) / "codes"
    # The codes files in hermes' order (sorted by their path under codes/).
    files = [str(p) for p in sorted(root.rglob("*.parquet"), key=lambda p: p.relative_to(root).as_posix())]
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET preserve_insertion_order = false")
    sql = query(files, args.seed, args.budget, args.size, args.max_epochs, args.temperature,
                args.quality, args.top, args.out, args.key)
    started = time.perf_counter()
    con.execute(sql)
    seconds = time.perf_counter() - started
    # The process's peak RSS so far (getrusage, as wait4 reports hermes'): the query's peak,
    # taken before the counts and the check below run.
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows, copies = con.execute(
        f"SELECT count(*), coalesce(sum(copies), 0) FROM read_parquet('{args.out}')").fetchone()
    report = {"seconds": seconds, "peak_rss_mib": peak_mib, "rows": rows, "copies": int(copies)}
    if args.check and args.key == "sha256":
        # hermes writes selection/<codes path>.parquet per codes file: the same rows by name.
        sel = pathlib.Path(args.check) / "selection"
        prefix = str(root) + "/"
        diff = con.execute(f"""
            WITH h AS (
              SELECT '{prefix}' || substr(filename, {len(str(sel)) + 2}) AS file, "row", copies
              FROM read_parquet('{sel}/**/*.parquet', filename = true)),
            d AS (SELECT file, "row", copies FROM read_parquet('{args.out}'))
            SELECT (SELECT count(*) FROM (SELECT * FROM h EXCEPT ALL SELECT * FROM d))
                 + (SELECT count(*) FROM (SELECT * FROM d EXCEPT ALL SELECT * FROM h))
        """).fetchone()[0]
        report["differing_rows"] = diff
    print(json.dumps(report))


if __name__ == "__main__":
    main()
