//! The whole server in-process (`hermes::server::serve` on a loopback listener): admission
//! of full-size requests, abandoned work, and a clean return on shutdown.

mod common;

use std::time::{Duration, Instant};

use hermes::server::ServeConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use common::client;

struct InProcess {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The served config: the defaults for the repository's bundle, as a test changes them.
fn config(change: impl FnOnce(&mut ServeConfig)) -> ServeConfig {
    let mut c = ServeConfig::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/minilm-wiki"));
    change(&mut c);
    c
}

impl InProcess {
    async fn start(config: ServeConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hermes::server::serve(listener, config, async {
            let _ = rx.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(120);
        while client()
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "server not ready");
            assert!(!task.is_finished(), "server stopped during start-up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            base,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .expect("serve returns Ok");
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_maximum_size_requests_at_the_same_moment_both_succeed() {
    let s = InProcess::start(config(|c| c.core.cache.texts = 0)).await;
    let max = hermes::labeling::limits::defaults::MAX_DOCS_PER_REQUEST;
    let body = |who: &str| json!({"texts": (0..max).map(|i| format!("{who} short text number {i}")).collect::<Vec<_>>()});
    let (a, b) = tokio::join!(
        client()
            .post(format!("{}/v1/embed", s.base))
            .json(&body("first"))
            .send(),
        client()
            .post(format!("{}/v1/embed", s.base))
            .json(&body("second"))
            .send(),
    );
    for r in [a.unwrap(), b.unwrap()] {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["embeddings"].as_array().unwrap().len(), max);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_of_a_client_that_went_away_are_not_encoded() {
    let s = InProcess::start(config(|c| c.core.cache.texts = 0)).await;
    let long = "a sentence of plain words to make the text long ".repeat(40);
    let docs: Vec<Value> = (0..256)
        .map(|i| json!({"text": format!("{i} {long}")}))
        .collect();
    // The client gives up long before 256 long texts can be encoded on any CPU.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = impatient
        .post(format!("{}/v1/label", s.base))
        .json(&json!({ "documents": docs }))
        .send()
        .await;
    assert!(r.is_err(), "the request should have timed out");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = client()
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let abandoned = metric(&text, "hermes_abandoned_docs_total");
        let queued = metric(&text, "hermes_queue_docs_reserved");
        if abandoned > 0.0 && queued == 0.0 {
            assert!(abandoned <= 256.0);
            break;
        }
        assert!(Instant::now() < deadline, "nothing abandoned: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The server still answers.
    let r = client()
        .post(format!("{}/v1/label", s.base))
        .json(&json!({"documents": [{"text": "still here"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}
