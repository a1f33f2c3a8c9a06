//! The whole server in-process (`hermes::server::serve` on a loopback listener): admission
//! of full-size requests, abandoned work, and a clean return on shutdown.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::client;
use common::inprocess::{InProcess, config, metric};

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
