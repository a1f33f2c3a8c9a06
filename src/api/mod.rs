//! The HTTP API: routes, the OpenAPI document generated from them, and the middleware stack.
//!
//! Handlers are thin: an extractor validates the shape (see `extract`), one `Service` method
//! does the work, `ApiError` maps every failure to its status in one place (see `error`).

mod buckets;
pub mod error;
pub mod extract;
mod labels;
mod meta;
mod middleware;
pub mod state;
pub mod stream;
pub mod types;
mod vectors;

pub use middleware::check_cors_origins;

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, ResponseBuilder, content::ContentBuilder};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use error::{ApiError, ErrorBody};
use state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hermes",
        description = "Coarse-to-fine document codes (c1, c2, c3) for pre-training data mixtures. \
            Every error has the shape {\"error\":{\"code\",\"message\"}}.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "labels", description = "Label documents and fetch their codes at any depth"),
        (name = "vectors", description = "The encoder and the quantizer on their own"),
        (name = "model", description = "The served bundle"),
        (name = "buckets", description = "What each bucket holds: cards and the atlas page"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    ),
    components(schemas(ErrorBody, types::StreamLineError))
)]
struct ApiDoc;

/// Adds the error responses each route can give, so the spec lists every status the server
/// sends (the conformance test treats an undocumented status as a failure).
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Set with --api-key"))
                    .build(),
            ),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let v1 = path.starts_with("/v1/");
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                };
                add(
                    "405",
                    "method_not_allowed: the path exists with another method",
                );
                add("500", "internal: a bug; the message says where");
                add(
                    "414",
                    "uri_too_long: the path and query are longer than 65534 bytes (the connection closes)",
                );
                add(
                    "431",
                    "headers_too_large: over 100 header fields or 400 KiB of head (the connection closes)",
                );
                add(
                    "503",
                    "overloaded (with Retry-After) when the queue is full; unavailable while loading or draining",
                );
                if v1 {
                    add(
                        "401",
                        "unauthorized: --api-key is set and the bearer token is missing or wrong",
                    );
                    add("404", "not_found");
                    add(
                        "422",
                        "validation_error: well-formed input that breaks the schema or a limit",
                    );
                    if op.request_body.is_some() {
                        add(
                            "400",
                            "invalid_json: the body is not valid JSON (or not UTF-8)",
                        );
                        add("413", "payload_too_large: body over --max-body-bytes");
                        add(
                            "408",
                            "request_timeout: the body stalled for --body-timeout-s (the connection closes)",
                        );
                        add(
                            "415",
                            "unsupported_media_type: wrong Content-Type or Content-Encoding",
                        );
                    } else {
                        add("400", "invalid_json: malformed request");
                    }
                    op.security = Some(vec![
                        utoipa::openapi::security::SecurityRequirement::new(
                            "bearer",
                            Vec::<String>::new(),
                        ),
                        utoipa::openapi::security::SecurityRequirement::default(),
                    ]);
                } else {
                    add(
                        "400",
                        "bad_request: a malformed request line or header (the connection closes)",
                    );
                }
            }
        }
    }
}

/// Every documented route, with its handler.
fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(labels::label))
        .routes(routes!(stream::label_stream))
        .routes(routes!(labels::get_code))
        .routes(routes!(labels::lookup))
        .routes(routes!(vectors::quantize))
        .routes(routes!(vectors::embed))
        .routes(routes!(meta::model))
        .routes(routes!(buckets::list))
        .routes(routes!(buckets::get));
    let ops = OpenApiRouter::new()
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
        .routes(routes!(meta::docs))
        .routes(routes!(buckets::atlas));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(v1)
        .merge(ops)
}

/// The OpenAPI document, as `hermes openapi` prints it and `/openapi.json` serves it.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let (_, mut spec) = routes().split_for_parts();
        // After the merge: the routes' operations exist only now.
        ErrorResponses.modify(&mut spec);
        let mut json = spec
            .to_pretty_json()
            .expect("the OpenAPI document serialises");
        json.push('\n');
        json
    })
}

/// Limits and switches the middleware needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    /// Time to the response head; past it, 503 `unavailable`.
    pub request_timeout: Duration,
    /// Longest wait for the next bytes of a request body; past it, 408 `request_timeout`
    /// and the connection closes.
    pub body_timeout: Duration,
    pub cors_origins: Vec<String>,
}

/// The full application: routes, fallbacks and the middleware stack.
pub fn app(state: AppState, config: &HttpConfig) -> Router {
    let (router, _) = routes().split_for_parts();
    let router = router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_api_key,
        ))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    middleware::stack(router, config).with_state(state)
}
