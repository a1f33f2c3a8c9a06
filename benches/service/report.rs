//! The service bench's report: `target/bench/report.md` (also printed) and
//! `target/bench/report.json`, from every step's results.

use serde_json::{Value, json};

use crate::ceiling::Layout;
use crate::{CachedGets, Config, Duplicate, LoadResult, Paired, Peers, Per, SoakResult};

/// Everything the bench measured, in the order it measured it.
pub struct Results {
    /// `<cores> cores, <CPU model>`.
    pub machine: String,
    pub cfg: Config,
    pub peers: Peers,
    /// The strongest ceiling layout and its median docs/s.
    pub ceiling: (Layout, f64),
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

/// The paired rounds as markdown: every layout per round with its median (the strongest in
/// bold), then the service per round against the strongest layout in the same round; the
/// same per wall-clock second (the target) and per CPU-second (what a shared machine's load
/// does not move).
pub fn paired_markdown(paired: &Paired, cfg: &Config) -> String {
    let rounds = paired.rounds.len();
    let mut md = format!(
        "Ceiling layouts ({:.0} s each per round; the in-process ones embed and code, the Python ones embed), then `hermes serve` (release) at 16 clients ({:.0} s per request size per round), back to back in each of {rounds} rounds.\n",
        cfg.ceiling_s, cfg.service_s
    );
    for (per, unit) in [
        (Per::Second, "docs/s"),
        (Per::CpuSecond, "docs per CPU-second"),
    ] {
        md.push_str(&paired_tables(paired, per, unit));
    }
    md.push_str("\nTarget: service / strongest ceiling >= 0.95 in docs/s at both request sizes. Per CPU-second, the service's CPU is the server process's (HTTP, JSON, tokenizer, encoder; not the load generator's), a ceiling's that of its threads or processes.\n");
    md
}

fn paired_tables(paired: &Paired, per: Per, unit: &str) -> String {
    let (strongest, ceil) = paired.strongest(per);
    let rounds = paired.rounds.len();
    let header: String = (1..=rounds).map(|r| format!(" round {r} |")).collect();
    let rule: String = "---|".repeat(rounds);
    let mut md = format!("\n**In {unit}:**\n\n| layout |{header} median |\n|---|{rule}---|\n");
    for (layout, median) in paired.layout_medians(per) {
        let each: String = paired
            .layout_rates(layout, per)
            .iter()
            .map(|r| r.map_or(" - |".to_string(), |r| format!(" {r:.1} |")))
            .collect();
        let name = layout.name();
        if layout == strongest {
            md.push_str(&format!("| **{name}** |{each} **{median:.1}** |\n"));
        } else {
            md.push_str(&format!("| {name} |{each} {median:.1} |\n"));
        }
    }
    md.push_str(&format!(
        "\nStrongest ceiling in {unit} (best median): **{}, {ceil:.1}**.\n\n| 16 clients x | service per round | strongest layout, same round | ratio per round | mean batch | p50 ms | median ratio |\n|---|---|---|---|---|---|---|\n",
        strongest.name()
    ));
    let strongest_rates = paired.layout_rates(strongest, per);
    for n in crate::TARGET_SIZES {
        let runs = paired.service(n);
        let join = |v: Vec<String>| v.join(", ");
        md.push_str(&format!(
            "| {n} doc(s) | {} | {} | {} | {} | {} | **{:.2} x** |\n",
            join(
                runs.iter()
                    .map(|s| format!("{:.1}", per.of_service(s)))
                    .collect()
            ),
            join(
                strongest_rates
                    .iter()
                    .map(|r| r.map_or("-".to_string(), |r| format!("{r:.1}")))
                    .collect()
            ),
            join(
                paired
                    .ratios(n, per)
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect()
            ),
            join(
                runs.iter()
                    .map(|s| format!("{:.1}", s.mean_batch))
                    .collect()
            ),
            join(runs.iter().map(|s| format!("{:.0}", s.p50_ms)).collect()),
            paired.median_ratio(n, per)
        ));
    }
    md
}

/// The markdown report.
pub fn markdown(r: &Results) -> String {
    let Results {
        machine,
        peers,
        load,
        ..
    } = r;
    let ceil = r.ceiling.1;
    let (label, label_static) = (peers.label, peers.label_static);
    let (get_s, soak_s) = (r.cfg.get_s, r.cfg.soak_s);
    let (gets, pinned) = (&r.gets.client, &r.gets.pinned);
    let (server_p99_ms, server_under_1ms) = (r.gets.server_p99_ms, r.gets.server_under_1ms);
    let (encode_docs_s, cached_docs_s) = (r.duplicate.encode_docs_s, r.duplicate.cached_docs_s);
    let (idle_rss, peak_rss_load, peak_rss) = r.rss_kib;
    let (soak_ok, soak_refused, slope) = (r.soak.run.ok, r.soak.run.refused, r.soak.slope);
    let (pid, survived, still_ready, total_s) = (r.pid, r.survived, r.still_ready, r.total_s);

    let mut md = format!(
        "# hermes bench ({machine})\n\nThe machine is shared: compare figures within a round, not across runs.\n\n{}\n\
         The load table ({:.0} s per row; ratio to the strongest ceiling's median, {ceil:.1} docs/s):\n\n\
         | clients | docs/request | requests | refused | docs/s | p50 ms | p95 ms | p99 ms | service/ceiling |\n|---|---|---|---|---|---|---|---|---|\n",
        paired_markdown(&r.paired, &r.cfg),
        r.cfg.phase_s
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
    let (peers, ceil, paired) = (&r.peers, r.ceiling.1, &r.paired);
    let (label, label_static) = (peers.label, peers.label_static);
    let (gets, pinned) = (&r.gets.client, &r.gets.pinned);
    let duplicate = &r.duplicate;
    let rounds: Vec<Value> = paired
        .rounds
        .iter()
        .map(|round| {
            let layouts: Vec<Value> = round
                .layouts
                .iter()
                .map(|(l, rate)| json!({"layout": l, "name": l.name(), "rate": rate}))
                .collect();
            json!({"layouts": layouts, "service_16_clients": round.service})
        })
        .collect();
    json!({
        "machine": r.machine,
        "ceiling": {"layout": r.ceiling.0, "name": r.ceiling.0.name(), "median_docs_per_s": ceil},
        "ceiling_layout_medians": paired.layout_medians(Per::Second).iter().zip(paired.layout_medians(Per::CpuSecond)).map(|((l, m), (_, c))| json!({"layout": l, "name": l.name(), "median_docs_per_s": m, "median_docs_per_cpu_s": c})).collect::<Vec<_>>(),
        "paired_rounds": rounds,
        "paired_median_ratio": {"16x16": paired.median_ratio(16, Per::Second), "16x1": paired.median_ratio(1, Per::Second)},
        "paired_median_ratio_per_cpu_second": {"16x16": paired.median_ratio(16, Per::CpuSecond), "16x1": paired.median_ratio(1, Per::CpuSecond)},
        "label": {"docs": label.docs, "docs_per_s_with_startup": label.with_startup, "docs_per_s_steady": label.steady, "ratio": label.steady / ceil},
        "label_static": {"docs": label_static.docs, "docs_per_s_with_startup": label_static.with_startup, "docs_per_s_steady": label_static.steady, "vs_minilm": label_static.steady / label.steady},
        "service_static_16x16": {"docs_per_s": r.service_static.docs_per_s, "p50_ms": r.service_static.p50_ms},
        "load": r.load,
        "cached_get": {"rate": 2000, "seconds": r.cfg.get_s, "requests": gets.requests, "failed": gets.failed, "p50_ms": gets.p50_ms, "p99_ms": gets.p99_ms, "p99_from_send_ms": gets.p99_from_send_ms, "timer_late_p99_ms": gets.late_p99_ms, "server_share_under_1ms": r.gets.server_under_1ms, "pinned_p99_ms": pinned.as_ref().map(|p| p.p99_ms), "pinned_p99_from_send_ms": pinned.as_ref().map(|p| p.p99_from_send_ms), "server_p99_bucket_ms": r.gets.server_p99_ms},
        "duplicate": {"encode_docs_per_s": duplicate.encode_docs_s, "cached_docs_per_s": duplicate.cached_docs_s, "ratio": duplicate.cached_docs_s / duplicate.encode_docs_s},
        "rss_kib": {"idle": r.rss_kib.0, "peak_load": r.rss_kib.1, "peak": r.rss_kib.2, "soak_samples": r.soak.run.rss_samples},
        "soak": {"offered_docs_per_s": r.soak.offered, "seconds": r.cfg.soak_s, "ok": r.soak.run.ok, "refused": r.soak.run.refused, "rss_trend_mib_per_min": r.soak.slope},
        "server_survived": r.survived,
        "still_ready": r.still_ready,
        "seconds": r.total_s,
    })
}
