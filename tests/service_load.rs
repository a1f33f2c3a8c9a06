//! The service under load and at shutdown, against the real binary: overload answers fast
//! with 503 + Retry-After and recovers; SIGTERM drains every accepted request; concurrent
//! clients get exactly the codes one-at-a-time labeling gives.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, client, wiki_texts};
use hermes::bundle::{LoadOptions, Model};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn docs(texts: &[String]) -> Value {
    json!({"documents": texts.iter().map(|t| json!({"text": t})).collect::<Vec<_>>()})
}

#[tokio::test]
async fn overload_is_refused_fast_and_the_server_recovers() {
    let s = Server::start(&[
        "--max-queue-docs",
        "8",
        "--max-docs-per-request",
        "8",
        "--max-batch-docs",
        "4",
        "--cache-texts",
        "0",
    ])
    .await;
    let texts = wiki_texts(96);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in texts.chunks(4) {
        let url = s.url("/v1/label");
        let body = docs(chunk);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client().post(url).json(&body).send().await.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, retry, v, t.elapsed())
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, retry, v, took) = t.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                refused += 1;
                assert_eq!(v["error"]["code"], "overloaded");
                assert_eq!(retry.as_deref(), Some("1"));
                assert!(took < Duration::from_secs(2), "a refusal took {took:?}");
            }
            other => panic!("unexpected status {other}: {v}"),
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "the burst did not finish in time"
    );
    // Load is gone: normal requests succeed again.
    for chunk in texts.chunks(4).take(3) {
        let r = client()
            .post(s.url("/v1/label"))
            .json(&docs(chunk))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn sigterm_answers_every_accepted_request() {
    let mut s = Server::start(&["--cache-texts", "0"]).await;
    let texts = wiki_texts(64);
    let mut tasks = Vec::new();
    for chunk in texts.chunks(8) {
        let url = s.url("/v1/label");
        let body = docs(chunk);
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    // Let every request reach the server (64 documents take seconds to encode), then stop it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.terminate();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(
            t.await
                .unwrap()
                .expect("an accepted request lost its answer"),
        );
    }
    assert!(statuses.iter().all(|&st| st == 200), "{statuses:?}");
    // The process exits on its own, cleanly, in bounded time.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "exit {status:?}; log:\n{}", s.log_text());
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.log_text().contains("draining"));
}

#[tokio::test]
async fn concurrent_clients_get_one_at_a_time_codes() {
    let texts = wiki_texts(120);
    // Reference: each text alone through the library.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/minilm-wiki");
    let model = Model::load(&dir, &LoadOptions::default()).unwrap();
    let reference: HashMap<&str, Value> = texts
        .iter()
        .map(|t| {
            let e = model.encoder.embed(&[t]).unwrap();
            (
                t.as_str(),
                json!(model.space.codes(&e.vectors).unwrap()[0].0),
            )
        })
        .collect();
    drop(model);

    // Content cache off so that every request is really encoded in mixed batches.
    let s = Server::start(&["--cache-texts", "0", "--max-batch-docs", "16"]).await;
    let mut tasks = Vec::new();
    for client_id in 0..32u64 {
        let url = s.url("/v1/label");
        let texts = texts.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(client_id);
            let mut seen = Vec::new();
            for _ in 0..2 {
                let n = rng.random_range(1..=6);
                let mut pick: Vec<String> = texts.choose_multiple(&mut rng, n).cloned().collect();
                pick.shuffle(&mut rng);
                let v: Value = client()
                    .post(&url)
                    .json(&docs(&pick))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for (t, r) in pick.into_iter().zip(v["results"].as_array().unwrap()) {
                    seen.push((t, r["code"].clone()));
                }
            }
            seen
        }));
    }
    let mut checked = 0;
    for t in tasks {
        for (text, code) in t.await.unwrap() {
            assert_eq!(
                code,
                reference[text.as_str()],
                "code changed under concurrency"
            );
            checked += 1;
        }
    }
    assert!(checked >= 64);
}
