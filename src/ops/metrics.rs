//! The process-wide Prometheus recorder, shared by `serve` and `consume`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The process-wide Prometheus recorder (installed on first use).
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
                .expect("one Prometheus recorder per process")
        })
        .clone()
}
