//! The HTTP API against a real server on a loopback port with the default bundle: the label
//! contract, the codes cache, quantize/embed agreement, the stream, and bad input.

mod common;

use common::{Server, client, wiki_texts};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    let r = client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn label_then_fetch_any_depth_by_get_and_lookup() {
    let s = Server::start(&[]).await;
    let texts = wiki_texts(6);
    let docs: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": format!("w{i}"), "text": t}))
        .collect();
    let (status, body) = post(&s, "/v1/label", json!({"documents": docs})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["model"]["fingerprint"].as_str().unwrap().len() == 16);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["id"], format!("w{i}"), "results come in input order");
        let full: Vec<u64> = r["code"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        assert_eq!(full.len(), 3);
        assert_eq!(r["label"], format!("{}.{}.{}", full[0], full[1], full[2]));
        assert_eq!(r["cell"], full[0] * 64 * 32 + full[1] * 32 + full[2]);
        assert_eq!(r["cached"], false);
        for depth in 1..=3usize {
            let g: Value = s.get_json(&format!("/v1/codes/w{i}?depth={depth}")).await;
            assert_eq!(g["code"], json!(full[..depth]), "GET w{i} depth {depth}");
            assert_eq!(g["id"], format!("w{i}"));
            let (st, l) = post(
                &s,
                "/v1/codes/lookup",
                json!({"ids": [format!("w{i}"), "never-seen"], "depth": depth}),
            )
            .await;
            assert_eq!(st, 200);
            assert_eq!(
                l["results"][0]["code"],
                json!(full[..depth]),
                "lookup w{i} depth {depth}"
            );
            assert_eq!(l["results"][1], Value::Null);
        }
    }
    let r = client()
        .get(s.url("/v1/codes/never-seen"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "not_found");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never-seen")
    );

    // The same text again is answered from the content cache, with the same code.
    let (_, again) = post(
        &s,
        "/v1/label",
        json!({"documents": [{"text": texts[0]}], "depth": 2}),
    )
    .await;
    assert_eq!(again["results"][0]["cached"], true);
    assert_eq!(
        again["results"][0]["code"],
        results[0]["code"].as_array().unwrap()[..2]
            .iter()
            .cloned()
            .collect::<Value>()
    );
    let metrics = s.get_text("/metrics").await;
    assert!(
        metrics.contains("hermes_cache_requests_total{cache=\"text\",outcome=\"hit\"}"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "hermes_http_requests_total{route=\"/v1/label\",method=\"POST\",status=\"200\"}"
    ));
    assert!(metrics.contains("hermes_encoder_batch_seconds_bucket"));
    assert!(
        metrics.contains("hermes_cache_entries{cache=\"id\",encoder=\"minilm\"} 6"),
        "{metrics}"
    );
}

#[tokio::test]
async fn quantize_of_embed_equals_label() {
    let s = Server::start(&[]).await;
    let texts = wiki_texts(8);
    let (st, emb) = post(&s, "/v1/embed", json!({"texts": texts})).await;
    assert_eq!(st, 200, "{emb}");
    let vectors = emb["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 8);
    assert_eq!(vectors[0].as_array().unwrap().len(), 384);
    let (st, q) = post(&s, "/v1/quantize", json!({"embeddings": vectors})).await;
    assert_eq!(st, 200, "{q}");
    let docs: Vec<Value> = texts.iter().map(|t| json!({"text": t})).collect();
    let (_, l) = post(&s, "/v1/label", json!({"documents": docs})).await;
    for i in 0..8 {
        assert_eq!(q["results"][i]["code"], l["results"][i]["code"], "text {i}");
        assert_eq!(q["results"][i]["cell"], l["results"][i]["cell"]);
    }
    let (_, q1) = post(
        &s,
        "/v1/quantize",
        json!({"embeddings": vectors, "depth": 1}),
    )
    .await;
    assert_eq!(q1["results"][0]["code"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ndjson_stream_labels_in_order_and_reports_bad_lines() {
    let s = Server::start(&[]).await;
    let texts = wiki_texts(40);
    let mut body = String::new();
    for (i, t) in texts.iter().enumerate() {
        body.push_str(&json!({"id": format!("s{i}"), "text": t}).to_string());
        body.push('\n');
        if i == 10 {
            body.push('\n'); // empty line
            body.push_str("{\"id\": \"broken\"\n"); // not JSON
            body.push_str(&json!({"text": 5}).to_string()); // wrong type
            body.push('\n');
        }
    }
    let r = client()
        .post(s.url("/v1/label/stream?depth=2"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 43);
    assert_eq!(lines[11]["line"], 12);
    assert_eq!(lines[11]["error"]["code"], "validation_error");
    assert_eq!(lines[12]["error"]["code"], "invalid_json");
    assert_eq!(lines[13]["error"]["code"], "validation_error");
    let ok: Vec<&Value> = lines.iter().filter(|l| l.get("error").is_none()).collect();
    assert_eq!(ok.len(), 40);
    for (i, l) in ok.iter().enumerate() {
        assert_eq!(l["id"], format!("s{i}"), "stream keeps input order");
        assert_eq!(l["code"].as_array().unwrap().len(), 2);
    }
    // Stream codes equal /v1/label's.
    let g: Value = s.get_json("/v1/codes/s3?depth=2").await;
    assert_eq!(g["code"], ok[3]["code"]);
}

/// (name, method, path, content-type, body, expected status, expected error code)
/// One bad request: what it is, method, path, content type, body, status and error code.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    ctype: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn bad_requests() -> Vec<Case> {
    let j = Some("application/json");
    let doc =
        |extra: &str| format!("{{\"documents\":[{{\"text\":\"hello\"}}]{extra}}}").into_bytes();
    let big_text = "a".repeat(70_000);
    let mut cases = vec![
        (
            "malformed JSON",
            "POST",
            "/v1/label".into(),
            j,
            b"{\"documents\": [".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "not JSON at all",
            "POST",
            "/v1/label".into(),
            j,
            b"hello".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "wrong content type",
            "POST",
            "/v1/label".into(),
            Some("text/plain"),
            doc(""),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            "POST",
            "/v1/label".into(),
            None,
            doc(""),
            415,
            "unsupported_media_type",
        ),
        (
            "documents not an array",
            "POST",
            "/v1/label".into(),
            j,
            b"{\"documents\":\"x\"}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "text is a number",
            "POST",
            "/v1/label".into(),
            j,
            b"{\"documents\":[{\"text\":5}]}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "missing documents",
            "POST",
            "/v1/label".into(),
            j,
            b"{}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "missing text",
            "POST",
            "/v1/label".into(),
            j,
            b"{\"documents\":[{\"id\":\"a\"}]}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "unknown field",
            "POST",
            "/v1/label".into(),
            j,
            doc(",\"dept\":2"),
            422,
            "validation_error",
        ),
        (
            "top-level array",
            "POST",
            "/v1/label".into(),
            j,
            b"[]".to_vec(),
            422,
            "validation_error",
        ),
        (
            "empty documents",
            "POST",
            "/v1/label".into(),
            j,
            b"{\"documents\":[]}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "depth 0",
            "POST",
            "/v1/label".into(),
            j,
            doc(",\"depth\":0"),
            422,
            "validation_error",
        ),
        (
            "depth 4",
            "POST",
            "/v1/label".into(),
            j,
            doc(",\"depth\":4"),
            422,
            "validation_error",
        ),
        (
            "negative depth",
            "POST",
            "/v1/label".into(),
            j,
            doc(",\"depth\":-1"),
            422,
            "validation_error",
        ),
        (
            "non-integer depth",
            "POST",
            "/v1/label".into(),
            j,
            doc(",\"depth\":2.5"),
            422,
            "validation_error",
        ),
        (
            "string depth",
            "POST",
            "/v1/label".into(),
            j,
            doc(",\"depth\":\"2\""),
            422,
            "validation_error",
        ),
        (
            "oversized text",
            "POST",
            "/v1/label".into(),
            j,
            json!({"documents": [{"text": big_text}]})
                .to_string()
                .into_bytes(),
            422,
            "validation_error",
        ),
        (
            "ID of 10 KB",
            "POST",
            "/v1/label".into(),
            j,
            json!({"documents": [{"id": "i".repeat(10_240), "text": "x"}]})
                .to_string()
                .into_bytes(),
            422,
            "validation_error",
        ),
        (
            "invalid UTF-8 bytes",
            "POST",
            "/v1/label".into(),
            j,
            b"{\"documents\":[{\"text\":\"\xff\xfe bad\"}]}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "GET depth not a number",
            "GET",
            "/v1/codes/x?depth=abc".into(),
            None,
            vec![],
            422,
            "validation_error",
        ),
        (
            "GET depth 9",
            "GET",
            "/v1/codes/x?depth=9".into(),
            None,
            vec![],
            422,
            "validation_error",
        ),
        (
            "GET id of 10 KB",
            "GET",
            format!("/v1/codes/{}", "i".repeat(10_240)),
            None,
            vec![],
            422,
            "validation_error",
        ),
        (
            "lookup ids not an array",
            "POST",
            "/v1/codes/lookup".into(),
            j,
            b"{\"ids\":\"a\"}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "lookup without ids",
            "POST",
            "/v1/codes/lookup".into(),
            j,
            b"{\"ids\":[]}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "embed empty texts",
            "POST",
            "/v1/embed".into(),
            j,
            b"{\"texts\":[]}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "wrong embedding dimension",
            "POST",
            "/v1/quantize".into(),
            j,
            b"{\"embeddings\":[[0.1,0.2,0.3]]}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "NaN as a string",
            "POST",
            "/v1/quantize".into(),
            j,
            b"{\"embeddings\":[[\"NaN\"]]}".to_vec(),
            422,
            "validation_error",
        ),
        (
            "NaN literal",
            "POST",
            "/v1/quantize".into(),
            j,
            b"{\"embeddings\":[[NaN]]}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "stream with JSON content type",
            "POST",
            "/v1/label/stream".into(),
            j,
            b"{\"text\":\"a\"}\n".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "unknown route",
            "GET",
            "/v2/label".into(),
            None,
            vec![],
            404,
            "not_found",
        ),
        (
            "wrong method",
            "GET",
            "/v1/label".into(),
            None,
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            "wrong method on lookup",
            "DELETE",
            "/v1/codes/lookup".into(),
            None,
            vec![],
            405,
            "method_not_allowed",
        ),
    ];
    // 1e39 overflows f32 to infinity: the "NaN via a number" trick.
    let mut inf = vec![json!(0.01); 384];
    inf[7] = json!(1e39);
    cases.push((
        "infinity via 1e39",
        "POST",
        "/v1/quantize".into(),
        j,
        json!({"embeddings": [inf]}).to_string().into_bytes(),
        422,
        "validation_error",
    ));
    let too_many: Vec<Value> = (0..257).map(|i| json!({"text": format!("t{i}")})).collect();
    cases.push((
        "too many documents",
        "POST",
        "/v1/label".into(),
        j,
        json!({"documents": too_many}).to_string().into_bytes(),
        422,
        "validation_error",
    ));
    cases.push((
        "oversized body",
        "POST",
        "/v1/label".into(),
        j,
        vec![b' '; 2 * 1024 * 1024],
        413,
        "payload_too_large",
    ));
    cases
        .into_iter()
        .map(|(name, method, path, ctype, body, status, code)| Case {
            name,
            method,
            path,
            ctype,
            body,
            status,
            code,
        })
        .collect()
}

#[tokio::test]
async fn bad_requests_get_their_status_and_error_code() {
    let s = Server::start(&["--max-body-bytes", "1048576"]).await;
    let cases = bad_requests();
    assert!(cases.len() >= 25);
    for Case {
        name,
        method,
        path,
        ctype,
        body,
        status,
        code,
    } in cases
    {
        let mut req = client().request(method.parse().unwrap(), s.url(&path));
        if let Some(ct) = ctype {
            req = req.header("content-type", ct);
        }
        let r = req
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status().as_u16(), status, "{name}");
        let v: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        assert_eq!(v["error"]["code"], code, "{name}: {v}");
        assert!(
            !v["error"]["message"].as_str().unwrap().is_empty(),
            "{name}"
        );
    }
    // Corrupt gzip and an unsupported encoding.
    let r = client()
        .post(s.url("/v1/label"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(b"not gzip".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .post(s.url("/v1/label"))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(b"{}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unsupported_media_type"
    );
    // Still serving, and nothing above was a 5xx.
    let (st, _) = post(
        &s,
        "/v1/label",
        json!({"documents": [{"text": "still alive"}]}),
    )
    .await;
    assert_eq!(st, 200);
    let metrics = s.get_text("/metrics").await;
    // (/readyz answered 503 while the bundle loaded: that is its job, not an error.)
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("hermes_http_requests_total")
                && l.contains("status=\"5")
                && !l.contains("/readyz")
        })
        .collect();
    assert!(server_errors.is_empty(), "{server_errors:?}");
}

#[tokio::test]
async fn api_key_guards_v1_only() {
    let s = Server::start(&["--api-key", "s3cret"]).await;
    let body = json!({"documents": [{"text": "hi"}]});
    let r = client()
        .post(s.url("/v1/label"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let r = client()
        .post(s.url("/v1/label"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(s.url("/v1/label"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(
            client().get(s.url(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
}

#[tokio::test]
async fn operations_routes_request_ids_and_compression() {
    let s = Server::start(&[]).await;
    let r = client()
        .get(s.url("/v1/model"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["levels"], json!([64, 64, 32]));
    assert_eq!(m["dim"], 384);
    assert_eq!(m["max_tokens"], 256);
    assert_eq!(m["fit"]["n_docs"], 10033);
    let r = client().get(s.url("/healthz")).send().await.unwrap();
    assert!(
        !r.headers()["x-request-id"].is_empty(),
        "an id is generated when absent"
    );

    let spec = s.get_text("/openapi.json").await;
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert_eq!(
        spec, committed,
        "openapi/openapi.json is stale: run `make openapi`"
    );
    let page = s.get_text("/docs").await;
    assert!(
        page.contains("/openapi.json") && !page.contains("https://"),
        "the docs page fetches nothing external"
    );

    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(s.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
}
