//! The process-wide Prometheus recorder, shared by `serve` and `consume`.
//!
//! `install_recorder` keeps every histogram observation in memory until something drains it,
//! and only a scrape of `/metrics` or `run_upkeep` does. Nobody may ever scrape, so an upkeep
//! thread here drains every [`UPKEEP`]. The same thread hands glibc's free pages back to the
//! OS (`malloc_trim`): with a flat live heap (measured with heaptrack), glibc's per-thread
//! arenas kept what small batches had freed, and an idle-ish `consume` grew by 2 MB a second
//! in the soak (docs/testing.md, "Soak"); with the trim, a tenth of that.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often histogram observations are folded into their buckets when nobody scrapes.
pub const UPKEEP: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed on first use, with its upkeep thread).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ];
            let docs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
            let tokens = [64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("hermes_batch_docs".into()), &docs)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("hermes_batch_tokens".into()), &tokens)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .inspect(|handle| {
                    let upkeep = handle.clone();
                    std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP);
                                upkeep.run_upkeep();
                                #[cfg(target_env = "gnu")]
                                // SAFETY: malloc_trim only hands free pages back to the OS.
                                unsafe {
                                    libc::malloc_trim(0);
                                }
                            }
                        })
                        .expect("spawn the metrics upkeep thread");
                })
                .expect("one Prometheus recorder per process")
        })
        .clone()
}
