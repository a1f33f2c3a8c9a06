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

#[test]
fn spec_limits_are_the_server_defaults() {
    use hermes::labeling::limits::defaults::*;
    let spec: serde_json::Value = serde_json::from_str(hermes::api::openapi_json()).unwrap();
    let s = &spec["components"]["schemas"];
    assert_eq!(
        s["LabelRequest"]["properties"]["documents"]["maxItems"],
        MAX_DOCS_PER_REQUEST
    );
    assert_eq!(
        s["DocumentIn"]["properties"]["text"]["maxLength"],
        MAX_TEXT_CHARS
    );
    assert_eq!(
        s["DocumentIn"]["properties"]["id"]["maxLength"],
        MAX_ID_CHARS
    );
    assert_eq!(
        s["StreamLine"]["properties"]["text"]["maxLength"],
        MAX_TEXT_CHARS
    );
    assert_eq!(
        s["EmbedRequest"]["properties"]["texts"]["maxItems"],
        MAX_DOCS_PER_REQUEST
    );
    assert_eq!(
        s["EmbedRequest"]["properties"]["texts"]["items"]["maxLength"],
        MAX_TEXT_CHARS
    );
    assert_eq!(
        s["LookupRequest"]["properties"]["ids"]["maxItems"],
        MAX_ITEMS_PER_REQUEST
    );
    assert_eq!(
        s["LookupRequest"]["properties"]["ids"]["items"]["maxLength"],
        MAX_ID_CHARS
    );
    let emb = &s["QuantizeRequest"]["properties"]["embeddings"];
    assert_eq!(emb["maxItems"], MAX_DOCS_PER_REQUEST);
    assert_eq!(
        emb["items"]["items"]["maximum"].as_f64().unwrap(),
        f64::from(MAX_ABS_EMBEDDING)
    );
}
