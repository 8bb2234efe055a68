//! Turning an append request's body into validated events: one JSON
//! object, a JSON array, or JSON Lines (`application/x-ndjson`). A batch is
//! validated whole; every rejected item is named by its index and nothing
//! is appended.

use serde_json::json;
use stele_ledger::event::{EventText, InputError, Limits, ValidEvent};

use crate::error::ApiError;
use axum::http::StatusCode;

/// How the body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: an object (one event) or an array (a batch).
    Json,
    /// `application/x-ndjson`: one event per line.
    JsonLines,
}

impl Framing {
    /// From the `Content-Type` header (absent means JSON).
    ///
    /// # Errors
    ///
    /// 415 `unsupported_media_type` for anything else.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, ApiError> {
        let essence = content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        match essence.as_str() {
            "" | "application/json" => Ok(Self::Json),
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
                Ok(Self::JsonLines)
            }
            other => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "content type {other:?} is not accepted: send application/json (an event or an array of events) or application/x-ndjson (one event per line)"
                ),
            )),
        }
    }
}

/// What the limits allow in one request.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Most events in one request.
    pub max_events: usize,
    /// Event limits (payload size).
    pub event: Limits,
}

/// Parses and validates the whole body. `idempotency_key` (the header)
/// becomes the key of a single event, or `<key>#<index>` of each event of a
/// batch that has none of its own, so that retrying the same request
/// appends nothing.
///
/// # Errors
///
/// 400 `invalid_utf8`, `invalid_json`, `empty_batch`; 413
/// `too_many_events`; 422 `invalid_events` with every rejected index.
pub fn parse_events(
    body: &[u8],
    framing: Framing,
    limits: &BatchLimits,
    idempotency_key: Option<&str>,
) -> Result<Vec<ValidEvent>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            format!(
                "the body is not UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    // A JSON body is checked whole for repeated keys and nesting only when
    // it is refused for some reason: an error of that check outranks any
    // other, as if it had run first. A body that is accepted has no
    // repeated key, since every event refuses one in its own parse or
    // validation (the check cost more than that parse, on every request).
    let refusal = |other: ApiError| match framing {
        Framing::Json => match stele_ledger::canonical::check_unambiguous_json(text) {
            Err(e) => invalid_json(&e),
            Ok(()) => other,
        },
        Framing::JsonLines => other,
    };
    let inputs = match framing {
        Framing::Json => json_inputs(text).map_err(refusal)?,
        Framing::JsonLines => jsonl_inputs(text, limits.max_events)?,
    };
    // One event takes the header's key as it is, however it was framed, so
    // a retry in another framing is still a retry.
    let single = inputs.len() == 1;
    if inputs.is_empty() {
        return Err(refusal(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "the request holds no events",
        )));
    }
    if inputs.len() > limits.max_events {
        return Err(refusal(too_many(inputs.len(), limits.max_events)));
    }
    let mut events = Vec::with_capacity(inputs.len());
    let mut rejected = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        let validated = input.and_then(|mut input| {
            if let (Some(key), None) = (idempotency_key, &input.idempotency_key) {
                input.idempotency_key = Some(if single {
                    key.to_owned()
                } else {
                    format!("{key}#{index}")
                });
            }
            input.validate(&limits.event)
        });
        match validated {
            Ok(event) => events.push(event),
            Err(e) => rejected.push(json!({
                "index": index,
                "code": input_code(&e),
                "message": e.to_string(),
            })),
        }
    }
    if !rejected.is_empty() {
        return Err(refusal(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_events",
                format!(
                    "{} of {} event(s) rejected; nothing was appended",
                    rejected.len(),
                    rejected.len() + events.len()
                ),
            )
            .with_details(json!({ "rejected": rejected })),
        ));
    }
    Ok(events)
}

fn too_many(found: usize, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_events",
        format!(
            "{found} events in one request; at most {limit} are accepted, nothing was appended"
        ),
    )
}

/// 400 `invalid_json`: the body as a whole is not what it should be.
fn invalid_json(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("{e}; nothing was appended"),
    )
}

/// A JSON body: an object is one event, an array a batch. Each event is
/// parsed straight into its input from its own slice of the text, so a
/// batch is never held twice as a tree of values. Repeated keys and
/// nesting are checked by the caller, over the whole body, if it is refused.
fn json_inputs(text: &str) -> Result<Vec<Result<EventText<'_>, InputError>>, ApiError> {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).map_err(|e| invalid_json(&e))?;
            Ok(items
                .into_iter()
                .map(|raw| parse_input(raw.get()))
                .collect())
        }
        Some(b'{') => Ok(vec![parse_input(text)]),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be an event object or an array of event objects",
        )),
    }
}

/// One event's text (a repeated key is refused here or in validation).
fn parse_input(text: &str) -> Result<EventText<'_>, InputError> {
    serde_json::from_str(text).map_err(|e| InputError::MalformedJson(e.to_string()))
}

fn jsonl_inputs(
    text: &str,
    max_events: usize,
) -> Result<Vec<Result<EventText<'_>, InputError>>, ApiError> {
    let mut inputs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if inputs.len() == max_events {
            let total = text.lines().filter(|l| !l.trim().is_empty()).count();
            return Err(too_many(total, max_events));
        }
        inputs.push(EventText::from_json(line));
    }
    Ok(inputs)
}

/// A stable code for each kind of invalid event.
fn input_code(e: &InputError) -> &'static str {
    match e {
        InputError::MalformedJson(_) => "malformed",
        InputError::DuplicateKey { .. } => "duplicate_key",
        InputError::InvalidType(_) => "invalid_type",
        InputError::ReservedType(_) => "reserved_type",
        InputError::TooDeep { .. } => "too_deep",
        InputError::InvalidActor(_) => "invalid_actor",
        InputError::InvalidIdempotencyKey => "invalid_idempotency_key",
        InputError::PayloadTooLarge { .. } => "payload_too_large",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BatchLimits {
        BatchLimits {
            max_events: 3,
            event: Limits {
                max_payload_bytes: 100,
            },
        }
    }

    fn code_of(r: Result<Vec<ValidEvent>, ApiError>) -> &'static str {
        r.expect_err("refused").code
    }

    #[test]
    fn one_object_an_array_and_json_lines_are_accepted() {
        let one = parse_events(br#"{"type":"a.b"}"#, Framing::Json, &limits(), Some("k")).unwrap();
        assert_eq!(one[0].idempotency_key.as_deref(), Some("k"));
        let many = parse_events(
            br#"[{"type":"a.b"},{"type":"a.c","idempotency_key":"own"}]"#,
            Framing::Json,
            &limits(),
            Some("k"),
        )
        .unwrap();
        let keys: Vec<_> = many.iter().map(|e| e.idempotency_key.as_deref()).collect();
        assert_eq!(keys, [Some("k#0"), Some("own")]);
        // One event is one event, whatever its framing: the header's key as is.
        for (body, framing) in [
            (&b"[{\"type\":\"a.b\"}]"[..], Framing::Json),
            (&b"{\"type\":\"a.b\"}\n"[..], Framing::JsonLines),
        ] {
            let one = parse_events(body, framing, &limits(), Some("k")).unwrap();
            assert_eq!(one[0].idempotency_key.as_deref(), Some("k"));
        }
        let lines = parse_events(
            b"{\"type\":\"a.b\"}\n\n{\"type\":\"a.c\"}\n",
            Framing::JsonLines,
            &limits(),
            None,
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn every_rejected_item_is_named_by_index() {
        let body = br#"[{"type":"a.b"},{"type":"stele.forged"},{"type":"a.c","payload":{"x":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"}}]"#;
        let e = parse_events(body, Framing::Json, &limits(), None).unwrap_err();
        assert_eq!(e.code, "invalid_events");
        let details = e.details.unwrap();
        let rejected = &details["rejected"];
        let indexes: Vec<u64> = rejected
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indexes, [1, 2]);
        assert_eq!(rejected[0]["code"], "reserved_type");
        assert_eq!(rejected[1]["code"], "payload_too_large");
    }

    /// The whole-body check runs only on a refused body, but answers as if
    /// it had run first: a repeated key anywhere, or nesting past serde's
    /// limit, is 400 `invalid_json` naming where, whatever else is wrong.
    #[test]
    fn a_repeated_key_outranks_every_other_refusal() {
        let refused = |body: &str| {
            parse_events(body.as_bytes(), Framing::Json, &limits(), None).expect_err("refused")
        };
        for (body, path) in [
            (
                r#"[{"type":"a.b"},{"type":"a.c","payload":{"x":{"y":1,"y":1}}}]"#,
                r#"$[1]."payload"."x""#,
            ),
            (r#"[{"type":"a.b","actor":"u","actor":"u"}]"#, "$[0]"),
            (r#"[{"type":"a.b","other":1,"other":1}]"#, "$[0]"),
            // Beside an item that breaks a rule, and in too many events.
            (
                r#"[{"type":"stele.forged"},{"type":"a.c","payload":{"y":1,"y":2}}]"#,
                r#"$[1]."payload""#,
            ),
            (
                r#"[{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a","payload":{"z":[{"k":1,"k":1}]}}]"#,
                r#"$[3]."payload"."z"[0]"#,
            ),
        ] {
            let e = refused(body);
            assert_eq!(
                (e.code, e.status),
                ("invalid_json", StatusCode::BAD_REQUEST),
                "{body}"
            );
            assert!(e.message.contains(path), "{body}: {}", e.message);
            assert_eq!(
                e.message.matches("nothing was appended").count(),
                1,
                "said once: {}",
                e.message
            );
        }
        // An event nested just past serde's limit inside the batch.
        let deep = format!(
            r#"[{{"type":"a.b","payload":{}1{}}}]"#,
            "[".repeat(126),
            "]".repeat(126)
        );
        assert_eq!(refused(&deep).code, "invalid_json");
        // Without a repeated key, the same refusals keep their own codes.
        assert_eq!(
            refused(r#"[{"type":"stele.forged"},{"type":"a.c","payload":{"y":1}}]"#).code,
            "invalid_events"
        );
    }

    #[test]
    fn malformed_bodies_get_their_own_codes() {
        assert_eq!(
            code_of(parse_events(b"\xff\xfe", Framing::Json, &limits(), None)),
            "invalid_utf8"
        );
        assert_eq!(
            code_of(parse_events(b"{", Framing::Json, &limits(), None)),
            "invalid_json"
        );
        assert_eq!(
            code_of(parse_events(b"42", Framing::Json, &limits(), None)),
            "invalid_json"
        );
        assert_eq!(
            code_of(parse_events(
                br#"{"type":"a","type":"b"}"#,
                Framing::Json,
                &limits(),
                None
            )),
            "invalid_json"
        );
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(
            code_of(parse_events(
                deep.as_bytes(),
                Framing::Json,
                &limits(),
                None
            )),
            "invalid_json"
        );
        assert_eq!(
            code_of(parse_events(b"[]", Framing::Json, &limits(), None)),
            "empty_batch"
        );
        let four = br#"[{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"}]"#;
        assert_eq!(
            code_of(parse_events(four, Framing::Json, &limits(), None)),
            "too_many_events"
        );
        let four_lines = "{\"type\":\"a\"}\n".repeat(4);
        assert_eq!(
            code_of(parse_events(
                four_lines.as_bytes(),
                Framing::JsonLines,
                &limits(),
                None
            )),
            "too_many_events"
        );
        assert!(Framing::from_content_type(Some("text/plain")).is_err());
        assert_eq!(
            Framing::from_content_type(Some("application/x-ndjson; charset=utf-8")).unwrap(),
            Framing::JsonLines
        );
    }
}
