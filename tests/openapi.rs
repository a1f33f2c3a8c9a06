//! The committed spec is what the code generates.

#[test]
fn committed_openapi_equals_generated() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hermes"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert!(
        generated == committed,
        "openapi/openapi.json differs from `hermes openapi`: run `make openapi` and commit"
    );
    let spec: serde_json::Value = serde_json::from_str(&generated).unwrap();
    for path in [
        "/v1/label",
        "/v1/label/stream",
        "/v1/codes/{id}",
        "/v1/codes/lookup",
        "/v1/quantize",
        "/v1/embed",
        "/v1/model",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} is not documented"
        );
    }
}
