//! The service bench's report: `target/bench/report.md` (also printed) and
//! `target/bench/report.json`, from every step's results.

use serde_json::{Value, json};

use crate::{CachedGets, Config, Duplicate, LoadResult, Paired, Peers, SoakResult};

/// Everything the bench measured, in the order it measured it.
pub struct Results {
    /// `<cores> cores, <CPU model>`.
    pub machine: String,
    pub cfg: Config,
    pub peers: Peers,
    pub load: Vec<LoadResult>,
    pub paired: Paired,
    pub service_static: LoadResult,
    pub gets: CachedGets,
    pub duplicate: Duplicate,
    /// Idle, peak under closed-loop load, peak overall (KiB).
    pub rss_kib: (u64, u64, u64),
    pub soak: SoakResult,
    pub pid: u32,
    pub survived: bool,
    pub still_ready: bool,
    pub total_s: f64,
}

impl Paired {
    /// The median of the rounds' service/ceiling ratios for one request size.
    pub fn median_ratio(&self, per_request: usize) -> f64 {
        crate::support::median(
            self.rounds
                .iter()
                .filter(|r| r.docs_per_request == per_request)
                .map(|r| r.service / r.ceiling)
                .collect(),
        )
    }

    /// Every round, per request size, with the median ratio.
    pub fn line(&self) -> String {
        [1usize, 16]
            .iter()
            .map(|&n| {
                let each: Vec<String> = self.rounds
                    .iter()
                    .filter(|r| r.docs_per_request == n)
                    .map(|r| {
                        format!(
                            "{:.1}/{:.1} (ceiling spinning {:.1}, not {:.1}, a session per core {:.1}; mean batch {:.1})",
                            r.service, r.ceiling, r.spinning.0, r.spinning.1, r.per_core, r.batch
                        )
                    })
                    .collect();
                format!(
                    "{n} doc(s)/request: median **{:.2} x** (service/ceiling docs/s per round: {})",
                    self.median_ratio(n),
                    each.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The markdown report.
pub fn markdown(r: &Results) -> String {
    let Results {
        machine,
        peers,
        load,
        ..
    } = r;
    let (ceil, best_batch, arena) = (peers.ceiling, peers.best_batch, peers.arena);
    let (label, label_static) = (peers.label, peers.label_static);
    let (get_s, soak_s, rounds_each) = (r.cfg.get_s, r.cfg.soak_s, r.cfg.rounds_each);
    let paired_line = r.paired.line();
    let (gets, pinned) = (&r.gets.client, &r.gets.pinned);
    let (server_p99_ms, server_under_1ms) = (r.gets.server_p99_ms, r.gets.server_under_1ms);
    let (encode_docs_s, cached_docs_s) = (r.duplicate.encode_docs_s, r.duplicate.cached_docs_s);
    let (idle_rss, peak_rss_load, peak_rss) = r.rss_kib;
    let (soak_ok, soak_refused, slope) = (r.soak.run.ok, r.soak.run.refused, r.soak.slope);
    let (pid, survived, still_ready, total_s) = (r.pid, r.survived, r.still_ready, r.total_s);

    let at16 = load
        .iter()
        .filter(|l| l.clients == 16)
        .map(|l| l.docs_per_s)
        .fold(0.0, f64::max);
    let by_batch = peers
        .by_batch
        .iter()
        .map(|(b, d)| format!("batch {b}: {d:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    let python_line = peers
        .python
        .map_or("not run (no .cache/venv)".to_string(), |p| {
            format!("{p:.1} docs/s = {:.2} x the ceiling", p / ceil)
        });
    let arena_ratio = arena / ceil;
    let mut md = format!(
        "# hermes bench ({machine})\n\nIn-process ceiling (encoder + transform + quantizer, length-sorted batches, best batch size): **{ceil:.1} docs/s** ({by_batch}). Python onnxruntime, same encoder.onnx and texts, batches of 32: {python_line}. Batch {best_batch} with ONNX Runtime's CPU arena and memory pattern on (hermes leaves them off): {arena:.1} docs/s = {arena_ratio:.2} x the ceiling.\n\n\
         | clients | docs/request | requests | refused | docs/s | p50 ms | p95 ms | p99 ms | service/ceiling |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for l in load {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
            l.clients,
            l.docs_per_request,
            l.requests,
            l.refused,
            l.docs_per_s,
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.ratio_to_ceiling
        ));
    }
    let per_core_sizes = match best_batch {
        1 | 4 => "1 and 4".to_string(),
        b => format!("1, 4 and {b}"),
    };
    md.push_str(&format!(
        "\nTarget service >= 0.95 x ceiling at 16 clients, in paired rounds (the ceiling: the best of one two-thread session at batch {best_batch} with ONNX Runtime's threads spinning and not spinning, and one single-threaded session per core at its best of batch {per_core_sizes}; then the service, back to back, {rounds_each} rounds each): {paired_line}. In the table above (ceiling measured once, at the start): best {at16:.1} docs/s = {:.2} x.\n",
        at16 / ceil
    ));
    let minilm16 = load
        .iter()
        .filter(|l| l.clients == 16 && l.docs_per_request == 16)
        .map(|l| l.docs_per_s)
        .fold(0.0, f64::max);
    md.push_str(&format!(
        "\nStatic tier, same run: `hermes label --encoder static` on {} texts: {:.0} docs/s steady ({:.0} with start-up) = {:.0} x minilm's `hermes label` (steady rates); the service at 16 clients x 16 docs with `\"encoder\":\"static\"`: {:.0} docs/s = {:.0} x minilm's {:.1} (p50 {:.0} ms).\n",
        label_static.docs,
        label_static.steady,
        label_static.with_startup,
        label_static.steady / label.steady,
        r.service_static.docs_per_s,
        r.service_static.docs_per_s / minilm16,
        minilm16,
        r.service_static.p50_ms,
    ));
    md.push_str(&format!(
        "\n`hermes label` on {} wiki texts in 4 .jsonl files, one task: {:.1} docs/s steady = {:.2} x the ceiling (goal >= 0.95); {:.1} docs/s with its start-up (model loading, batch-size measurement) included.\n",
        label.docs,
        label.steady,
        label.steady / ceil,
        label.with_startup
    ));
    let pinned_line = pinned.as_ref().map_or(
        "Pinning the server and the client to different cores failed (no taskset?)".to_string(),
        |p| {
            format!(
                "Again with the server pinned to core 0 and the load generator to core 1 (`taskset`): {} requests, {} failed, p50 {:.2} ms, **p99 {:.2} ms**, p99 from the send {:.2} ms.",
                p.requests, p.failed, p.p50_ms, p.p99_ms, p.p99_from_send_ms
            )
        },
    );
    md.push_str(&format!(
        "\nCached `GET /v1/codes/{{id}}` at 2,000 requests/s for {get_s:.0} s: {} requests, {} failed, p50 {:.2} ms, **p99 {:.2} ms** (goal p99 <= 1 ms), measured by the client on the same 2 cores from each request's scheduled start. Requests started up to {:.2} ms after their scheduled time (p99: pacing thread and runtime pick-up); from the moment each request was sent, p99 {:.2} ms. The server's own histogram: {:.1}% answered within 1 ms, p99 bucket <= {server_p99_ms:.1} ms. {pinned_line}\n\n\
         Duplicate path (16 documents, content cache): {cached_docs_s:.0} docs/s vs {encode_docs_s:.1} docs/s encoding = {:.0}x (target >= 20x).\n\n\
         RSS: idle {:.0} MiB, peak under closed-loop load {:.0} MiB, peak overall {:.0} MiB.\n\
         Overload soak, {:.0} docs/s offered (4x saturation) for {soak_s:.0} s: {soak_ok} requests answered 200, {soak_refused} refused; after the first {:.0} s RSS stayed within {:.0}..{:.0} MiB, trend {slope:+.1} MiB/min.\n\n\
         Server pid {pid} survived the whole run: {survived}; still ready: {still_ready}. Bench took {total_s:.0} s.\n",
        gets.requests,
        gets.failed,
        gets.p50_ms,
        gets.p99_ms,
        gets.late_p99_ms,
        gets.p99_from_send_ms,
        server_under_1ms * 100.0,
        cached_docs_s / encode_docs_s,
        idle_rss as f64 / 1024.0,
        peak_rss_load as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        r.soak.offered,
        soak_s / 3.0,
        r.soak.rss_min_after,
        r.soak.rss_max_after,
    ));
    md
}

/// The JSON report: the same figures, and the raw ones behind them.
pub fn json(r: &Results) -> Value {
    let (peers, ceil, paired) = (&r.peers, r.peers.ceiling, &r.paired);
    let (label, label_static) = (peers.label, peers.label_static);
    let (gets, pinned) = (&r.gets.client, &r.gets.pinned);
    let duplicate = &r.duplicate;
    json!({
        "machine": r.machine,
        "ceiling_docs_per_s": ceil,
        "ceiling_by_batch": peers.by_batch,
        "arena_on_best_batch_docs_per_s": peers.arena,
        "python_onnxruntime_docs_per_s": peers.python,
        "label": {"docs": label.docs, "docs_per_s_with_startup": label.with_startup, "docs_per_s_steady": label.steady, "ratio": label.steady / ceil},
        "label_static": {"docs": label_static.docs, "docs_per_s_with_startup": label_static.with_startup, "docs_per_s_steady": label_static.steady, "vs_minilm": label_static.steady / label.steady},
        "service_static_16x16": {"docs_per_s": r.service_static.docs_per_s, "p50_ms": r.service_static.p50_ms},
        "load": r.load,
        "paired_16_clients": paired.rounds.iter().map(|r| json!({"docs_per_request": r.docs_per_request, "mean_batch_docs": r.batch, "ceiling": r.ceiling, "ceiling_spinning": r.spinning.0, "ceiling_not_spinning": r.spinning.1, "ceiling_session_per_core": r.per_core, "service": r.service, "ratio": r.service / r.ceiling})).collect::<Vec<_>>(),
        "paired_median_ratio": {"1": paired.median_ratio(1), "16": paired.median_ratio(16)},
        "cached_get": {"rate": 2000, "seconds": r.cfg.get_s, "requests": gets.requests, "failed": gets.failed, "p50_ms": gets.p50_ms, "p99_ms": gets.p99_ms, "p99_from_send_ms": gets.p99_from_send_ms, "timer_late_p99_ms": gets.late_p99_ms, "server_share_under_1ms": r.gets.server_under_1ms, "pinned_p99_ms": pinned.as_ref().map(|p| p.p99_ms), "pinned_p99_from_send_ms": pinned.as_ref().map(|p| p.p99_from_send_ms), "server_p99_bucket_ms": r.gets.server_p99_ms},
        "duplicate": {"encode_docs_per_s": duplicate.encode_docs_s, "cached_docs_per_s": duplicate.cached_docs_s, "ratio": duplicate.cached_docs_s / duplicate.encode_docs_s},
        "rss_kib": {"idle": r.rss_kib.0, "peak_load": r.rss_kib.1, "peak": r.rss_kib.2, "soak_samples": r.soak.run.rss_samples},
        "soak": {"offered_docs_per_s": r.soak.offered, "seconds": r.cfg.soak_s, "ok": r.soak.run.ok, "refused": r.soak.run.refused, "rss_trend_mib_per_min": r.soak.slope},
        "server_survived": r.survived,
        "still_ready": r.still_ready,
        "seconds": r.total_s,
    })
}
