//! One stream record in and out: [`Input`] (a fetched message and where it came from),
//! [`parse`] (payload → document, or the reason it is a bad record), and the JSON of an
//! output and of a dead letter (docs/streams.md). Pure functions: the brokers and the
//! labeler are elsewhere.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::keyspace::StoredCode;
use crate::labeling::Document;
use crate::tier::Tier;

/// A payload is cut to this many bytes in a dead letter: enough to see what was wrong with
/// it, small enough that one poison record cannot make the dead letter itself too large.
pub const MAX_DEAD_PAYLOAD: usize = 64 * 1024;

/// Where a record came from; written into its output and its dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Coords {
    /// The Kafka topic or the Redis stream.
    pub topic: Arc<str>,
    /// The Kafka partition; 0 for a Redis stream (one ordered log).
    pub partition: i32,
    pub offset: Offset,
}

/// A Kafka offset, or a Redis entry id (`1700000000000-0`), which is not a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Offset {
    Kafka(i64),
    Redis(String),
}

impl std::fmt::Display for Coords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.offset {
            Offset::Kafka(o) => write!(f, "{}:{}:{o}", self.topic, self.partition),
            Offset::Redis(id) => write!(f, "{}:{}:{id}", self.topic, self.partition),
        }
    }
}

/// A fetched record, between fetch and commit.
#[derive(Debug)]
pub struct Input {
    pub coords: Coords,
    /// The Kafka message value or the Redis entry's `value` field; `None` when there is none
    /// (a tombstone, an entry without that field): a bad record like any other.
    pub payload: Option<Vec<u8>>,
    /// When it was fetched: end-to-end latency is measured from here to its commit.
    pub fetched: Instant,
}

/// How a payload is read.
#[derive(Debug, Clone)]
pub struct RecordRules {
    pub text_field: String,
    pub id_field: String,
    pub max_text_chars: usize,
    pub max_id_chars: usize,
}

/// Why a record cannot be labeled: the API's error codes, so a dead letter reads like a 4xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bad {
    pub code: &'static str,
    pub message: String,
}

impl Bad {
    fn json(message: String) -> Self {
        Bad {
            code: "invalid_json",
            message,
        }
    }
    fn invalid(message: String) -> Self {
        Bad {
            code: "validation_error",
            message,
        }
    }
}

/// The document in a payload. A record without an id gets its coordinates as id
/// (`topic:partition:offset`): redelivered, it gets the same id and the same output.
pub fn parse(input: &Input, rules: &RecordRules) -> Result<Document, Bad> {
    let payload = input
        .payload
        .as_deref()
        .ok_or_else(|| Bad::json("the record has no value".into()))?;
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Bad::json(format!("not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(Bad::invalid("the value is not a JSON object".into()));
    };
    let text = match obj.remove(&rules.text_field) {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(Bad::invalid(format!(
                "no text field {:?}",
                rules.text_field
            )));
        }
        Some(other) => {
            return Err(Bad::invalid(format!(
                "field {:?} is a {}, not a string",
                rules.text_field,
                kind(&other)
            )));
        }
    };
    if too_long(&text, rules.max_text_chars) {
        return Err(Bad::invalid(format!(
            "field {:?} has more than {} characters",
            rules.text_field, rules.max_text_chars
        )));
    }
    let id = match obj.remove(&rules.id_field) {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        None | Some(Value::Null) => input.coords.to_string(),
        Some(other) => {
            return Err(Bad::invalid(format!(
                "field {:?} is a {}, not a string",
                rules.id_field,
                kind(&other)
            )));
        }
    };
    if id.is_empty() || too_long(&id, rules.max_id_chars) {
        return Err(Bad::invalid(format!(
            "field {:?} must have 1 to {} characters",
            rules.id_field, rules.max_id_chars
        )));
    }
    Ok(Document { id: Some(id), text })
}

fn too_long(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().nth(max).is_some()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Which bundle and tier labeled an output (the `model` object of `serve`'s answers).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelRef {
    pub name: String,
    pub fingerprint: String,
    pub encoder: Tier,
}

impl ModelRef {
    pub fn of(tier: &crate::labeling::TierService) -> Self {
        let model = tier.labeler.model();
        Self {
            name: model.name().to_string(),
            fingerprint: model.fingerprint().to_string(),
            encoder: tier.labeler.tier(),
        }
    }
}

#[derive(Serialize)]
struct Output<'a> {
    id: &'a str,
    code: Vec<u32>,
    label: String,
    cell: u64,
    truncated: bool,
    model: &'a ModelRef,
    source: &'a Coords,
}

/// The output record of a labeled document: the same fields as a `/v1/label` result (without
/// `cached`, so that a redelivered input gives a byte-identical output), plus its source.
pub fn output(
    id: &str,
    code: &StoredCode,
    depth: usize,
    levels: &[usize],
    model: &ModelRef,
    source: &Coords,
) -> Vec<u8> {
    let at = code.code.truncate(depth);
    let out = Output {
        id,
        label: at.label(),
        cell: at.cell(levels),
        code: at.0,
        truncated: code.truncated,
        model,
        source,
    };
    serde_json::to_vec(&out).expect("plain structs serialize")
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    error: &'a Bad,
    /// The payload as text (invalid UTF-8 replaced), cut to [`MAX_DEAD_PAYLOAD`] bytes.
    payload: Option<String>,
    /// The payload's size before the cut.
    payload_bytes: usize,
    source: &'a Coords,
}

/// The dead letter of a bad record: the error, the payload (cut) and where it came from.
pub fn dead_letter(input: &Input, error: &Bad) -> Vec<u8> {
    let payload = input.payload.as_deref().map(|p| {
        let mut end = p.len().min(MAX_DEAD_PAYLOAD);
        // Cut on a character boundary where the bytes are UTF-8.
        while end > 0 && end < p.len() && (p[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        String::from_utf8_lossy(&p[..end]).into_owned()
    });
    let letter = DeadLetter {
        error,
        payload,
        payload_bytes: input.payload.as_ref().map_or(0, Vec::len),
        source: &input.coords,
    };
    serde_json::to_vec(&letter).expect("plain structs serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(payload: &[u8]) -> Input {
        Input {
            coords: Coords {
                topic: "docs".into(),
                partition: 3,
                offset: Offset::Kafka(41),
            },
            payload: Some(payload.to_vec()),
            fetched: Instant::now(),
        }
    }

    fn rules() -> RecordRules {
        RecordRules {
            text_field: "text".into(),
            id_field: "id".into(),
            max_text_chars: 10,
            max_id_chars: 4,
        }
    }

    #[test]
    fn a_document_keeps_its_id_and_one_without_gets_its_coordinates() {
        let d = parse(&input(br#"{"id":"a1","text":"hello","x":1}"#), &rules()).unwrap();
        assert_eq!((d.id.as_deref(), d.text.as_str()), (Some("a1"), "hello"));
        let d = parse(&input(br#"{"id":7,"text":"hi"}"#), &rules()).unwrap();
        assert_eq!(d.id.as_deref(), Some("7"));
        let mut r = rules();
        r.max_id_chars = 256;
        let d = parse(&input(br#"{"text":"hi"}"#), &r).unwrap();
        assert_eq!(d.id.as_deref(), Some("docs:3:41"));
    }

    #[test]
    fn each_kind_of_bad_record_has_its_reason() {
        let cases: [(&[u8], &str, &str); 8] = [
            (b"not json", "invalid_json", "not JSON"),
            (b"[1,2]", "validation_error", "not a JSON object"),
            (br#"{"id":"a"}"#, "validation_error", "no text field"),
            (br#"{"text":12}"#, "validation_error", "is a number"),
            (
                br#"{"text":"0123456789x"}"#,
                "validation_error",
                "more than 10",
            ),
            (
                br#"{"text":"ok","id":[1]}"#,
                "validation_error",
                "is a array",
            ),
            (
                br#"{"text":"ok","id":"abcde"}"#,
                "validation_error",
                "1 to 4",
            ),
            (br#"{"text":"ok","id":""}"#, "validation_error", "1 to 4"),
        ];
        for (payload, code, why) in cases {
            let e = parse(&input(payload), &rules()).unwrap_err();
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(payload));
            assert!(e.message.contains(why), "{}: {}", e.message, why);
        }
        // Ten characters of two bytes each are within a 10-character limit.
        let accented = "{\"id\":\"a\",\"text\":\"éééééééééé\"}";
        assert!(parse(&input(accented.as_bytes()), &rules()).is_ok());
        let none = Input {
            payload: None,
            ..input(b"")
        };
        assert_eq!(parse(&none, &rules()).unwrap_err().code, "invalid_json");
    }

    #[test]
    fn a_dead_letter_carries_the_error_the_cut_payload_and_the_coordinates() {
        let big = vec![b'x'; MAX_DEAD_PAYLOAD + 10];
        let i = input(&big);
        let bad = parse(&i, &rules()).unwrap_err();
        let v: Value = serde_json::from_slice(&dead_letter(&i, &bad)).unwrap();
        assert_eq!(v["error"]["code"], "invalid_json");
        assert_eq!(v["payload"].as_str().unwrap().len(), MAX_DEAD_PAYLOAD);
        assert_eq!(v["payload_bytes"], MAX_DEAD_PAYLOAD + 10);
        assert_eq!(
            v["source"],
            serde_json::json!({"topic": "docs", "partition": 3, "offset": 41})
        );
        // A multi-byte character across the cut is not split.
        let mut p = vec![b'a'; MAX_DEAD_PAYLOAD - 1];
        p.extend_from_slice("é".as_bytes());
        let i = input(&p);
        let v: Value = serde_json::from_slice(&dead_letter(&i, &bad)).unwrap();
        assert_eq!(v["payload"].as_str().unwrap().len(), MAX_DEAD_PAYLOAD - 1);
    }
}
