//! The middleware stack: request ids, tracing, metrics, CORS, compression both ways, timeouts
//! (the response head's, and a stalled request body's), the API key, and a last guard that
//! gives framework-made errors the documented JSON shape.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::HttpConfig;
use super::error::ApiError;
use super::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps the routed application in the full stack (outermost first).
pub fn stack(router: Router<AppState>, config: &HttpConfig) -> Router<AppState> {
    let compression = CompressionLayer::new().gzip(true).compress_when(
        SizeAbove::new(256)
            .and(NotForContentType::const_new(super::stream::NDJSON))
            .and(NotForContentType::GRPC)
            .and(NotForContentType::IMAGES),
    );
    // Statuses are not failures to the trace layer: its default logs every 5xx at ERROR, a
    // Kubernetes probe's 503 during start-up included. `ApiError` logs real faults itself.
    let trace = TraceLayer::new_for_http().on_failure(()).make_span_with(|req: &Request| {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
    });
    let router = router
        .layer(from_fn_with_state(config.request_timeout, timeout))
        .layer(RequestDecompressionLayer::new().gzip(true))
        .layer(from_fn_with_state(config.body_timeout, body_timeout))
        .layer(from_fn(error_shape))
        .layer(compression);
    let router = match cors(&config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(trace)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(from_fn(track_metrics)),
    )
}

/// Refuses an origin CORS could never match: not `*`, not `http(s)://host[:port]` without a
/// path, or not a valid header value.
pub fn check_cors_origins(origins: &[String]) -> Result<(), String> {
    for o in origins {
        if o == "*" {
            continue;
        }
        let rest = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .ok_or_else(|| format!("{o:?} is not `*` or an origin such as https://example.org"))?;
        if rest.is_empty() || rest.contains('/') || HeaderValue::from_str(o).is_err() {
            return Err(format!(
                "{o:?} is not an origin (scheme://host[:port], no path)"
            ));
        }
    }
    Ok(())
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, REQUEST_ID]);
    Some(if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        // `check_cors_origins` refused the server's start on any that does not parse.
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    })
}

/// Request count and latency by route template, method and status.
async fn track_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let labels = [
        ("route", route),
        ("method", method),
        ("status", resp.status().as_u16().to_string()),
    ];
    metrics::counter!("hermes_http_requests_total", &labels).increment(1);
    metrics::histogram!("hermes_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Answers 503 `unavailable` when a handler has not produced its response head in time.
/// (A streaming body, once started, is not cut.)
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            ApiError::Unavailable(format!("the request took longer than {}s", limit.as_secs()))
                .into_response()
        }
    }
}

/// Answers 408 `request_timeout` (and closes the connection) when the request body stalls:
/// the handler waited `limit` for its next bytes. Outside the decompression, so it times the
/// bytes on the wire. A streamed answer (NDJSON) already under way is not replaced: its body
/// error ends the stream with an error line.
async fn body_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let stalled = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(StallTimeout {
            inner: body,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            stalled: stalled.clone(),
        })
    });
    let resp = next.run(req).await;
    if !stalled.load(Ordering::Acquire) {
        return resp;
    }
    let mut resp = ApiError::RequestTimeout(BodyStalled(limit).to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The error a stalled body ends with.
#[derive(Debug)]
pub struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body sent nothing for {}s (--body-timeout-s)",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyStalled {}

/// A request body that fails with [`BodyStalled`] when its reader waits `limit` for a frame.
/// The clock runs only while someone waits for the body: a handler busy elsewhere is not a
/// client's stall.
struct StallTimeout {
    inner: Body,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    stalled: Arc<AtomicBool>,
}

impl HttpBody for StallTimeout {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.stalled.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if !this.armed {
            this.armed = true;
            let deadline = tokio::time::Instant::now() + this.limit;
            this.sleep.as_mut().reset(deadline);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.stalled.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(Box::new(BodyStalled(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Bearer-token check on `/v1/*` when `--api-key` is set.
pub async fn require_api_key(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = app.api_key()
        && req.uri().path().starts_with("/v1/")
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), key.as_bytes()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Gives error responses made outside the handlers (decompression, framework rejections) the
/// documented `{"error":{...}}` body.
async fn error_shape(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let message = status.canonical_reason().unwrap_or("error").to_string();
    let err = match status {
        StatusCode::BAD_REQUEST => ApiError::InvalidJson(message),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
        StatusCode::NOT_FOUND => ApiError::NotFound(message),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(message),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("unsupported Content-Encoding or Content-Type".into())
        }
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout(message),
        StatusCode::URI_TOO_LONG => ApiError::UriTooLong(message),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge(message),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Validation(message),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(message),
        s if s.is_client_error() => ApiError::Validation(message),
        _ => ApiError::Internal(message),
    };
    err.into_response()
}

#[cfg(test)]
mod tests {
    use super::check_cors_origins;

    #[test]
    fn an_origin_cors_could_never_match_is_refused() {
        let ok =
            |o: &[&str]| check_cors_origins(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["*", "https://example.org", "http://127.0.0.1:3000"]).is_ok());
        assert!(
            ok(&["example.org"])
                .unwrap_err()
                .contains("not `*` or an origin")
        );
        assert!(
            ok(&["https://example.org/path"])
                .unwrap_err()
                .contains("no path")
        );
        assert!(ok(&["https://"]).is_err());
        assert!(ok(&["https://exa\nmple.org"]).is_err());
    }
}
