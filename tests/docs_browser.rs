//! The `/docs` page in a real browser: headless Chromium (Debian's package, installed by
//! `make test`'s set-up) renders every operation of the spec. Browser and server run in a
//! network namespace that holds only loopback (scripts/docs_browser.sh), so no request can
//! leave the machine; the test also checks that every request the page made went to the server.

use std::process::Command;

mod common;

#[test]
fn docs_page_renders_every_operation_offline() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: `make setup-test` installs Debian's chromium (needs root)"
    );
    let out = tempfile::tempdir().unwrap();
    // In a process group of its own: whatever the script leaves running dies with the group.
    let status = common::Proc::run_group(
        Command::new("unshare")
            .args([
                "-n",
                "bash",
                concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/docs_browser.sh"),
                env!("CARGO_BIN_EXE_hermes"),
            ])
            .arg(out.path())
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    )
    .expect("run unshare (util-linux)");
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap_or_default();
    assert!(
        status.success(),
        "browser run failed: {}\n{}",
        read("chromium.log"),
        read("server.log")
    );
    let base = read("url").trim().to_string();
    let dom = read("dom.html");

    let spec: serde_json::Value = serde_json::from_str(hermes::api::openapi_json()).unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push(format!("data-method=\"{method}\" data-path=\"{path}\""));
            }
        }
    }
    assert!(operations.len() >= 12);
    assert!(
        dom.contains(&format!("data-rendered=\"{}\"", operations.len())),
        "not every operation rendered:\n{dom}"
    );
    for op in &operations {
        assert!(dom.contains(op), "{op} is not on the page");
    }

    // Requests the page made (the navigation, and everything it initiated) all went to the server.
    let page_requests = common::page_requests(&read("netlog.json"), &base, "/docs");
    assert!(
        page_requests.iter().any(|u| u.ends_with("/openapi.json")),
        "the page did not fetch the spec"
    );
    let outside: Vec<&String> = page_requests
        .iter()
        .filter(|u| !u.starts_with(&format!("{base}/")))
        .collect();
    assert!(
        outside.is_empty(),
        "the page requested something off the server: {outside:?}"
    );
}
