//! `--store redis://…` with a real `redis-server` (AOF on, loopback port) and several real
//! `hermes serve` replicas: codes labeled on one replica are read on another, survive the
//! death of a replica and a Redis restart, and a Redis outage is a prompt 503 that heals by
//! itself.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::redis::{Redis, free_port};
use common::{Server, client, wiki_texts};

async fn post(s: &Server, path: &str, body: &Value) -> (u16, Value, Duration) {
    let t = Instant::now();
    let r = client().post(s.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null), t.elapsed())
}

/// Codes of `ids` read through `s` with `/v1/codes/lookup`, in chunks.
async fn lookup_all(s: &Server, ids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for chunk in ids.chunks(2000) {
        let (status, v, _) = post(s, "/v1/codes/lookup", &json!({ "ids": chunk })).await;
        assert_eq!(status, 200, "{v}");
        out.extend(v["results"].as_array().unwrap().iter().cloned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_codes_that_survive_restarts_and_outages() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(tmp.path(), free_port());
    let url = redis.url();
    let store = ["--store", url.as_str(), "--store-timeout-ms", "500"];
    let a = Server::start(&store).await;
    let b = Server::start(&store).await;

    // 10,000 ids over 50 texts, labeled concurrently through A (the content cache spares
    // the encoder; every id is still written to the store).
    let texts = wiki_texts(50);
    let (status, warm, _) = post(
        &a,
        "/v1/label",
        &json!({"documents": texts.iter().map(|t| json!({"text": t})).collect::<Vec<_>>()}),
    )
    .await;
    assert_eq!(status, 200, "{warm}");
    let ids: Vec<String> = (0..10_000).map(|i| format!("doc-{i}")).collect();
    let mut tasks = Vec::new();
    for chunk in ids.chunks(250) {
        let body = json!({"documents": chunk.iter().map(|id| {
            let n: usize = id[4..].parse().unwrap();
            json!({"id": id, "text": texts[n % texts.len()]})
        }).collect::<Vec<_>>()});
        let url = a.url("/v1/label");
        tasks.push(tokio::spawn(async move {
            let r = client().post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["results"]
                .as_array()
                .unwrap()
                .clone()
        }));
    }
    let mut expected: Vec<Value> = Vec::new();
    for t in tasks {
        expected.extend(t.await.unwrap().into_iter().map(|r| r["code"].clone()));
    }
    assert_eq!(expected.len(), ids.len());
    let check = |got: &[Value], who: &str| {
        let missing = got.iter().filter(|v| v.is_null()).count();
        assert_eq!(missing, 0, "{missing} ids unknown to {who}");
        for (g, want) in got.iter().zip(&expected) {
            assert_eq!(&g["code"], want, "{who}");
        }
    };
    // Every id is readable through B, which labeled none of them.
    check(&lookup_all(&b, &ids).await, "B");
    let one = b.get_json("/v1/codes/doc-7?depth=1").await;
    assert_eq!(one["code"], json!([expected[7][0]]), "{one}");

    // A dies; B still answers.
    let mut a = a;
    a.child.kill9();
    check(&lookup_all(&b, &ids[..500]).await, "B after A's death");

    // Redis restarts (AOF); a new replica C, with an empty L1, reads every code from it.
    redis.down();
    redis.up();
    let c = Server::start(&store).await;
    check(&lookup_all(&c, &ids).await, "C after the Redis restart");

    // Redis goes away: every request that needs it is a prompt 503, never a hang and never
    // a 200 that did not store its ids.
    redis.down();
    let (status, v, took) = post(
        &c,
        "/v1/label",
        &json!({"documents": [{"id": "new-1", "text": texts[0]}]}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{v}"
    );
    assert!(took < Duration::from_secs(2), "label took {took:?}");
    let t = Instant::now();
    let r = client()
        .get(c.url("/v1/codes/never-labeled"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "GET took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let r = client().get(c.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "readyz took {:?}",
        t.elapsed()
    );
    let (status, _, took) = post(
        &c,
        "/v1/codes/lookup",
        &json!({"ids": ["nope-1", "nope-2"]}),
    )
    .await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(2), "lookup took {took:?}");
    // A document without an id needs no store.
    let (status, _, _) = post(&c, "/v1/label", &json!({"documents": [{"text": texts[1]}]})).await;
    assert_eq!(status, 200);

    // Redis is back: C recovers without a restart, and "new-1" was never stored.
    redis.up();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client()
        .get(c.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "C did not become ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client().get(c.url("/v1/codes/new-1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (status, v, _) = post(
        &c,
        "/v1/label",
        &json!({"documents": [{"id": "new-1", "text": texts[0]}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        b.get_json("/v1/codes/new-1").await["code"],
        v["results"][0]["code"]
    );
    let metrics = c.get_text("/metrics").await;
    assert!(
        metrics.contains("hermes_store_errors_total"),
        "no store error metric"
    );
    assert!(
        metrics.contains("hermes_store_seconds"),
        "no store latency metric"
    );
}

/// A value in the store that hermes did not write is an error the caller sees (500, logged),
/// not "unknown id": a 404 would invite relabeling over someone else's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_stored_value_is_an_error_not_an_unknown_id() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = Redis::start(tmp.path(), free_port());
    let url = redis.url();
    let s = Server::start(&["--store", url.as_str()]).await;
    let model = s.get_json("/v1/model").await;
    let key = format!(
        "hermes:{}:minilm:foreign",
        model["fingerprint"].as_str().unwrap()
    );
    let mut c = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    let cmd = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$7\r\ngarbage\r\n",
        key.len()
    );
    c.write_all(cmd.as_bytes()).unwrap();
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"+OK"));
    let r = client()
        .get(s.url("/v1/codes/foreign"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("undecodable"),
        "{body}"
    );
    // An id nobody stored is still a plain 404.
    let r = client()
        .get(s.url("/v1/codes/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
