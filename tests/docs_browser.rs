//! The `/docs` page in a real browser: headless Chromium (Debian's package, installed by
//! `make setup`) renders every operation of the spec, and no request leaves loopback.

mod common;

use std::process::Command;

use common::{Server, client};

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test]
async fn docs_page_renders_every_operation_offline() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `make setup` installs Debian's chromium package (needs root)"
    );
    let s = Server::start(&[]).await;
    let spec: serde_json::Value = client()
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push((method.to_string(), path.clone()));
            }
        }
    }
    assert!(operations.len() >= 12);

    let dir = tempfile::tempdir().unwrap();
    let netlog = dir.path().join("netlog.json");
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            // Nothing but loopback resolves: a request to the internet could only fail.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(s.url("/docs"))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains(&format!("data-rendered=\"{}\"", operations.len())),
        "not every operation rendered:\n{dom}"
    );
    for (method, path) in &operations {
        let needle = format!("data-method=\"{method}\" data-path=\"{path}\"");
        assert!(dom.contains(&needle), "{method} {path} is not on the page");
    }

    // Every URL the browser touched is on loopback.
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    let mut urls = Vec::new();
    for part in log.split("\"url\":\"").skip(1) {
        let url = part.split('"').next().unwrap_or("");
        if url.starts_with("http://") || url.starts_with("https://") || url.starts_with("ws") {
            urls.push(url.to_string());
        }
    }
    assert!(
        urls.iter().any(|u| u.ends_with("/openapi.json")),
        "the page did not fetch the spec: {urls:?}"
    );
    let outside: Vec<&String> = urls
        .iter()
        .filter(|u| !u.starts_with(&format!("{}/", s.base)))
        .collect();
    assert!(outside.is_empty(), "requests left loopback: {outside:?}");
}
