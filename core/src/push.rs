//! Validation of a `POST /push` body, reporting every problem at once.
//!
//! Rules (DESIGN.md, REST API):
//! - `send_id`: a string of 1..=[`MAX_SEND_ID`] bytes.
//! - `channel`: a string or an array of strings (each at most [`MAX_TOPIC`] bytes, at most
//!   [`MAX_TOPICS`] of them); missing means no topic.
//! - `recv_id`: an array of 1..=[`MAX_RECIPIENTS`] valid client ids. Duplicates are removed,
//!   keeping the first occurrence, so a client gets one copy per push.
//! - `data`: any JSON value except `null`, kept exactly as sent (not re-serialized).
//! - `ttl`: optional, whole seconds from 1 to [`MAX_TTL_SECS`].
//! - Unknown fields are ignored: business servers of the seed send extras.
//! - The body nests arrays and objects at most [`MAX_DEPTH`] levels deep (its own object
//!   included): the JSON parser's limit, told as such rather than as "not valid JSON".
//!
//! Every problem is found, but a caller answering a client lists only the first few
//! ([`cap_errors`]): 10 000 bad recipients must not make a megabyte of error text.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::ids::ClientId;
use crate::message::{NewMessage, Payload};

/// Most recipients of one push.
pub const MAX_RECIPIENTS: usize = 10_000;
/// Longest `send_id`, in bytes.
pub const MAX_SEND_ID: usize = 256;
/// Longest topic, in bytes.
pub const MAX_TOPIC: usize = 256;
/// Most topics of one push.
pub const MAX_TOPICS: usize = 64;
/// Longest accepted `ttl`: one year.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// Deepest nesting of arrays and objects in a body, its own object included. serde_json
/// refuses deeper input (its recursion limit), and every place a message is parsed again
/// (stores, broker) nests `data` exactly as deep as the push body does.
pub const MAX_DEPTH: usize = 127;

/// A valid push: one message for many recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The message to store for every recipient.
    pub message: NewMessage,
    /// The recipients, without duplicates, in the order given.
    pub recipients: Vec<ClientId>,
}

/// One problem with a push body: which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`recv_id[3]`), or `body` for the body as a whole.
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for FieldError {
    /// `field: message`, or the message alone when no field is named (the summary line of
    /// [`cap_errors`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Keeps the first `max` errors (at least one) and, when some were left out, adds one line
/// saying how many: `... and 9990 more`.
pub fn cap_errors(mut errors: Vec<FieldError>, max: usize) -> Vec<FieldError> {
    let max = max.max(1);
    if errors.len() > max {
        let more = errors.len() - max;
        errors.truncate(max);
        errors.push(err("", format!("... and {more} more")));
    }
    errors
}

/// The deepest nesting of arrays and objects in `body` (strings skipped), counting no further
/// than `stop`. Meant for a body the parser refused: it needs no valid JSON.
fn nesting(body: &[u8], stop: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > stop {
                    break;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The error for a body the JSON parser refused: nesting too deep, or not JSON.
fn not_json(body: &[u8], e: &serde_json::Error) -> Vec<FieldError> {
    if nesting(body, MAX_DEPTH) > MAX_DEPTH {
        return vec![err(
            "body",
            format!(
                "nesting too deep: at most {MAX_DEPTH} levels of arrays and objects (the body's \
                 own object included)"
            ),
        )];
    }
    vec![err("body", format!("not valid JSON: {e}"))]
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The body's known fields, each kept raw so that its type is checked here, with a precise
/// message, rather than by serde's first failure.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    send_id: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    recv_id: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    ttl: Option<&'a RawValue>,
}

/// A JSON value's kind, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_value(raw: &RawValue) -> Value {
    // The text was already parsed once as part of the body, so it is valid JSON.
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// Validates a `POST /push` body.
///
/// # Errors
/// Every problem found, each naming its field.
pub fn parse_push(body: &[u8]) -> Result<Push, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| not_json(body, &e))?;
    if !value.is_object() {
        return Err(vec![err(
            "body",
            format!("expected a JSON object, found {}", kind(&value)),
        )]);
    }
    // Parse again keeping the fields raw (borrowed), so `data` stays as sent.
    let raw: Body<'_> = serde_json::from_slice(body).map_err(|e| not_json(body, &e))?;
    let mut errors = Vec::new();

    let from = match raw.send_id.map(parse_value) {
        None | Some(Value::Null) => {
            errors.push(err("send_id", "required: the sender's name, a string"));
            None
        }
        Some(Value::String(s)) if s.is_empty() || s.len() > MAX_SEND_ID => {
            errors.push(err(
                "send_id",
                format!("must be 1 to {MAX_SEND_ID} bytes, found {} bytes", s.len()),
            ));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(v) => {
            errors.push(err(
                "send_id",
                format!("expected a string, found {}", kind(&v)),
            ));
            None
        }
    };

    let channel = match raw.channel.map(parse_value) {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => check_topics(vec![(0, Value::String(s))], false, &mut errors),
        Some(Value::Array(a)) => {
            if a.len() > MAX_TOPICS {
                errors.push(err(
                    "channel",
                    format!("at most {MAX_TOPICS} topics, found {}", a.len()),
                ));
                None
            } else {
                check_topics(a.into_iter().enumerate().collect(), true, &mut errors)
            }
        }
        Some(v) => {
            errors.push(err(
                "channel",
                format!(
                    "expected a string or an array of strings, found {}",
                    kind(&v)
                ),
            ));
            None
        }
    };

    let recipients = match raw.recv_id.map(parse_value) {
        None | Some(Value::Null) => {
            errors.push(err("recv_id", "required: an array of client ids"));
            None
        }
        Some(Value::Array(a)) if a.is_empty() || a.len() > MAX_RECIPIENTS => {
            errors.push(err(
                "recv_id",
                format!(
                    "must hold 1 to {MAX_RECIPIENTS} client ids, found {}",
                    a.len()
                ),
            ));
            None
        }
        Some(Value::Array(a)) => {
            let mut seen = HashSet::with_capacity(a.len());
            let mut ids = Vec::with_capacity(a.len());
            let before = errors.len();
            for (i, v) in a.iter().enumerate() {
                match v {
                    Value::String(s) => match ClientId::new(s) {
                        Ok(id) => {
                            if seen.insert(id.clone()) {
                                ids.push(id);
                            }
                        }
                        Err(e) => errors.push(err(format!("recv_id[{i}]"), e.to_string())),
                    },
                    other => errors.push(err(
                        format!("recv_id[{i}]"),
                        format!("expected a string, found {}", kind(other)),
                    )),
                }
            }
            (errors.len() == before).then_some(ids)
        }
        Some(v) => {
            errors.push(err(
                "recv_id",
                format!("expected an array of client ids, found {}", kind(&v)),
            ));
            None
        }
    };

    let data = match raw.data {
        None if value.get("data").is_some() => {
            errors.push(err("data", "must not be null"));
            None
        }
        None => {
            errors.push(err("data", "required: any JSON value except null"));
            None
        }
        Some(r) => match Payload::from_raw(r.to_owned()) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(err("data", e.to_string()));
                None
            }
        },
    };

    let ttl = match raw.ttl.map(parse_value) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s) if (1..=MAX_TTL_SECS).contains(&s) => Some(Some(Duration::from_secs(s))),
            _ => {
                errors.push(err(
                    "ttl",
                    format!("expected whole seconds from 1 to {MAX_TTL_SECS}, found {n}"),
                ));
                None
            }
        },
        Some(v) => {
            errors.push(err(
                "ttl",
                format!("expected whole seconds, found {}", kind(&v)),
            ));
            None
        }
    };

    match (from, channel, recipients, data, ttl) {
        (Some(from), Some(channel), Some(recipients), Some(data), Some(ttl))
            if errors.is_empty() =>
        {
            Ok(Push {
                message: NewMessage {
                    from,
                    channel,
                    data,
                    ttl,
                    push: None,
                },
                recipients,
            })
        }
        _ => Err(errors),
    }
}

/// Checks topics; `indexed` names them `channel[i]` (an array) rather than `channel`.
fn check_topics(
    items: Vec<(usize, Value)>,
    indexed: bool,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<String>> {
    let before = errors.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items {
        let field = if indexed {
            format!("channel[{i}]")
        } else {
            "channel".to_owned()
        };
        match v {
            Value::String(s) if s.len() > MAX_TOPIC => errors.push(err(
                field,
                format!("at most {MAX_TOPIC} bytes, found {}", s.len()),
            )),
            Value::String(s) => out.push(s),
            other => errors.push(err(
                field,
                format!("expected a string, found {}", kind(&other)),
            )),
        }
    }
    (errors.len() == before).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(body: &str) -> Vec<String> {
        parse_push(body.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_valid_push() {
        let p = parse_push(
            br#"{"send_id":"billing","channel":"invoice","recv_id":["a","b","a"],"data":{"n": 1},"ttl":60,"extra":true}"#,
        )
        .unwrap();
        assert_eq!(p.message.from, "billing");
        assert_eq!(p.message.channel, vec!["invoice"]);
        assert_eq!(
            p.message.data.json(),
            r#"{"n": 1}"#,
            "data kept exactly as sent"
        );
        assert_eq!(p.message.ttl, Some(Duration::from_secs(60)));
        let ids: Vec<&str> = p.recipients.iter().map(ClientId::as_str).collect();
        assert_eq!(ids, vec!["a", "b"], "duplicates removed, first kept");
        let p =
            parse_push(br#"{"send_id":"s","channel":["x","y"],"recv_id":["a"],"data":0}"#).unwrap();
        assert_eq!(p.message.channel, vec!["x", "y"]);
        assert_eq!(p.message.ttl, None);
        let p = parse_push(br#"{"send_id":"s","recv_id":["a"],"data":false}"#).unwrap();
        assert!(p.message.channel.is_empty());
    }

    #[test]
    fn every_problem_is_reported() {
        assert_eq!(
            fields(
                r#"{"send_id":5,"channel":{},"recv_id":["ok","bad id",7],"data":null,"ttl":-1}"#
            ),
            vec![
                "send_id",
                "channel",
                "recv_id[1]",
                "recv_id[2]",
                "data",
                "ttl"
            ]
        );
        assert_eq!(fields("{}"), vec!["send_id", "recv_id", "data"]);
        assert_eq!(
            fields(r#"{"send_id":"","recv_id":[],"data":1,"ttl":1.5,"channel":[1]}"#),
            vec!["send_id", "channel[0]", "recv_id", "ttl"]
        );
    }

    #[test]
    fn null_data_and_missing_data_are_told_apart() {
        let e = parse_push(br#"{"send_id":"s","recv_id":["a"],"data":null}"#).unwrap_err();
        assert_eq!(e[0].to_string(), "data: must not be null");
        let e = parse_push(br#"{"send_id":"s","recv_id":["a"]}"#).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "data: required: any JSON value except null"
        );
    }

    #[test]
    fn body_level_errors() {
        assert_eq!(fields("not json"), vec!["body"]);
        assert_eq!(fields("[1,2]"), vec!["body"]);
        assert_eq!(fields(""), vec!["body"]);
        let e = parse_push(b"[]").unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "body: expected a JSON object, found an array"
        );
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("\"c{i}\"")).collect();
        let body = format!(
            r#"{{"send_id":"s","recv_id":[{}],"data":1}}"#,
            many.join(",")
        );
        assert_eq!(fields(&body), vec!["recv_id"]);
        let body = format!(
            r#"{{"send_id":"s","recv_id":[{}],"data":1}}"#,
            many[..MAX_RECIPIENTS].join(",")
        );
        assert_eq!(
            parse_push(body.as_bytes()).unwrap().recipients.len(),
            MAX_RECIPIENTS
        );
        let long = "x".repeat(MAX_SEND_ID + 1);
        assert_eq!(
            fields(&format!(
                r#"{{"send_id":"{long}","recv_id":["a"],"data":1}}"#
            )),
            vec!["send_id"]
        );
        assert_eq!(
            fields(&format!(
                r#"{{"send_id":"s","recv_id":["a"],"data":1,"ttl":{}}}"#,
                MAX_TTL_SECS + 1
            )),
            vec!["ttl"]
        );
    }

    /// A body whose `data` nests `levels` arrays: the body is one level deeper.
    fn nested(levels: usize) -> String {
        format!(
            r#"{{"send_id":"s","recv_id":["a"],"data":{}1{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    }

    #[test]
    fn nesting_too_deep_is_told_with_the_limit() {
        let p = parse_push(nested(MAX_DEPTH - 1).as_bytes()).expect("at the limit");
        assert!(p.message.data.json().starts_with("[[["));
        let e = parse_push(nested(MAX_DEPTH).as_bytes()).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].to_string(),
            format!(
                "body: nesting too deep: at most {MAX_DEPTH} levels of arrays and objects (the \
                 body's own object included)"
            )
        );
        let e = parse_push(nested(5000).as_bytes()).unwrap_err();
        assert!(e[0].message.contains("nesting too deep"), "{e:?}");
        // Brackets inside strings do not count; other bad JSON stays "not valid JSON".
        let quoted = format!(
            r#"{{"send_id":"s","recv_id":["a"],"data":"{}\"{}"}}"#,
            "[".repeat(300),
            "{".repeat(300)
        );
        assert!(parse_push(quoted.as_bytes()).is_ok());
        let e = parse_push(b"{\"send_id\":").unwrap_err();
        assert!(e[0].message.starts_with("not valid JSON"), "{e:?}");
    }

    #[test]
    fn listed_errors_are_capped_with_a_count_of_the_rest() {
        let bad: Vec<String> = (0..MAX_RECIPIENTS)
            .map(|i| format!("\"bad id {i}\""))
            .collect();
        let body = format!(
            r#"{{"send_id":"s","recv_id":[{}],"data":1}}"#,
            bad.join(",")
        );
        let all = parse_push(body.as_bytes()).unwrap_err();
        assert_eq!(all.len(), MAX_RECIPIENTS, "every problem is found");
        let capped = cap_errors(all, 20);
        assert_eq!(capped.len(), 21);
        assert!(
            capped[0].to_string().starts_with("recv_id[0]: "),
            "{capped:?}"
        );
        assert!(capped[19].to_string().starts_with("recv_id[19]: "));
        assert_eq!(capped[20].to_string(), "... and 9980 more");
        let text: usize = capped.iter().map(|e| e.to_string().len()).sum();
        assert!(text < 4096, "{text} bytes of errors");
        // Under the cap nothing changes; a cap of 0 still lists one.
        let few = parse_push(br#"{"send_id":5,"recv_id":[],"data":null}"#).unwrap_err();
        assert_eq!(cap_errors(few.clone(), 20), few);
        assert_eq!(cap_errors(few, 0).len(), 2);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_push(&bytes);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            send in any::<Option<String>>(),
            ids in proptest::collection::vec("[a-z@ :{}]{0,5}", 0..20),
            ttl in any::<i64>(),
        ) {
            let body = serde_json::json!({"send_id": send, "recv_id": ids, "data": 1, "ttl": ttl});
            match parse_push(body.to_string().as_bytes()) {
                Ok(p) => prop_assert!(!p.recipients.is_empty()),
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }
    }
}
