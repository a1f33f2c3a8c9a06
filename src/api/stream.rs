//! `/v1/label/stream`: NDJSON in, NDJSON out, streamed both ways with bounded memory.
//!
//! The request body is split into lines as it arrives; each line is labeled through the same
//! batcher as `/v1/label` (so lines of one stream share encoder batches), at most
//! `--stream-concurrency` lines at a time, and results leave in input order as soon as they
//! are ready. A line longer than the limit is skipped without being buffered. A bad line
//! answers `{"line":n,"error":{...}}` and the stream goes on.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use super::error::ApiError;
use super::extract::{ApiQuery, has_content_type, parse_json};
use super::state::AppState;
use super::types::{DepthQuery, LabelResult, StreamLine, StreamLineError};
use crate::labeling::{Document, Service};
use crate::tier::Tier;

pub const NDJSON: &str = "application/x-ndjson";

/// One input line as split from the body.
pub(crate) enum Line {
    Text(Vec<u8>),
    TooLong(usize),
    /// The body failed mid-way (client gone, bad compression): reported once, then the end.
    BodyError(String),
}

struct Splitter<S> {
    body: S,
    buf: Vec<u8>,
    /// Bytes of an over-long line dropped so far (it is skipped, not buffered).
    skipping: Option<usize>,
    max_line: usize,
    done: bool,
}

/// Splits a byte stream at `\n`; lines over `max_line` bytes are reported, never buffered.
pub(crate) fn split_lines<S>(body: S, max_line: usize) -> impl Stream<Item = Line>
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    let state = Splitter {
        body,
        buf: Vec::new(),
        skipping: None,
        max_line,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(pos) = s.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = s.buf.drain(..=pos).collect();
                line.pop();
                if let Some(skipped) = s.skipping.take() {
                    return Some((Line::TooLong(skipped + line.len()), s));
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some((Line::Text(line), s));
            }
            if s.buf.len() > s.max_line {
                *s.skipping.get_or_insert(0) += s.buf.len();
                s.buf.clear();
            }
            if s.done {
                if let Some(skipped) = s.skipping.take() {
                    return Some((Line::TooLong(skipped + s.buf.len()), s));
                }
                if s.buf.is_empty() {
                    return None;
                }
                let line = std::mem::take(&mut s.buf);
                return Some((Line::Text(line), s));
            }
            match s.body.next().await {
                Some(Ok(chunk)) => s.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    s.done = true;
                    s.buf.clear();
                    s.skipping = None;
                    return Some((Line::BodyError(e.to_string()), s));
                }
                None => s.done = true,
            }
        }
    })
}

/// Label an NDJSON stream.
///
/// Request body: one `{"id","text"}` object per line (`Content-Type: application/x-ndjson`).
/// Response: one line per input line, in input order: a result object as in `/v1/label`, or
/// `{"line":n,"error":{...}}` for a line that could not be labeled. The depth is a query
/// parameter.
#[utoipa::path(post, path = "/v1/label/stream", tag = "labels", params(DepthQuery),
    request_body(content = StreamLine, content_type = "application/x-ndjson",
        description = "One JSON object per line"),
    responses((status = 200, content_type = "application/x-ndjson",
        description = "One line per input line: a LabelResult, or a StreamLineError", body = super::types::StreamOutLine)))]
pub async fn label_stream(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<DepthQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let svc = app.service()?.clone();
    let depth = svc.depth(q.depth)?;
    let tier = svc.tier(q.encoder)?.labeler.tier();
    if !has_content_type(
        req.headers(),
        &[NDJSON, "application/ndjson", "application/jsonl"],
    ) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: {NDJSON}"
        )));
    }
    // A character is at most 4 bytes, or 12 as JSON escapes (\ud83d\ude00); plus the keys.
    let max_line = (svc.limits.max_text_chars + svc.limits.max_id_chars) * 12 + 1024;
    let concurrency = svc.limits.stream_concurrency.max(1);
    let lines = split_lines(req.into_body().into_data_stream(), max_line);
    let out = lines
        .enumerate()
        .map(move |(i, line)| {
            let svc = svc.clone();
            async move { answer_line(&svc, tier, i + 1, line, depth).await }
        })
        .buffered(concurrency)
        .map(Ok::<_, std::convert::Infallible>);
    Ok(([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(out)).into_response())
}

async fn answer_line(svc: &Arc<Service>, tier: Tier, n: usize, line: Line, depth: usize) -> Bytes {
    let result = match line {
        Line::Text(bytes) => label_line(svc, tier, &bytes, depth).await,
        Line::TooLong(len) => Err(ApiError::Validation(format!(
            "line is {len} bytes, longer than any valid line can be"
        ))),
        Line::BodyError(e) => Err(ApiError::InvalidJson(format!(
            "the request body ended with an error: {e}"
        ))),
    };
    let mut out = match result {
        Ok(json) => json,
        Err(e) => serde_json::to_vec(&StreamLineError {
            line: n,
            error: e.body().error,
        })
        .unwrap_or_default(),
    };
    out.push(b'\n');
    Bytes::from(out)
}

async fn label_line(
    svc: &Arc<Service>,
    tier: Tier,
    bytes: &[u8],
    depth: usize,
) -> Result<Vec<u8>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Validation("empty line".into()));
    }
    let line: StreamLine = parse_json(bytes)?;
    let docs = vec![Document {
        id: line.id,
        text: line.text,
    }];
    svc.validate_documents(&docs)?;
    let labeled = svc
        .label(svc.tier(Some(tier))?, docs)
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("no result".into()))?;
    let result = LabelResult::at(labeled, depth, svc.model().levels());
    serde_json::to_vec(&result).map_err(|e| ApiError::Internal(e.to_string()))
}
