//! Canonical bytes of an event: RFC 8785 (JCS).
//!
//! The committed fields are exactly `actor`, `chain_id`, `payload`, `seq`,
//! `ts` and `type`, always all six (`actor` and `payload` are `null` when
//! absent). The canonical bytes are the JCS serialization of the object
//! with those members. `idempotency_key`, `key_id` and the hashes are not
//! committed: they are transport and chaining metadata.
//!
//! Because JCS sorts members by UTF-16 code units and the six names are
//! already in that order, the object is assembled member by member from
//! JCS-serialized values; `tests` check that this equals a full JCS pass.

use serde::Serialize;
use serde_json::Value;

use crate::event::InputError;

/// The committed fields of one event, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct CommittedFields<'a> {
    /// Chain id.
    pub chain_id: &'a str,
    /// Sequence number.
    pub seq: u64,
    /// Timestamp text.
    pub ts: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Actor.
    pub actor: Option<&'a str>,
    /// Payload, already in RFC 8785 form.
    pub canonical_payload: Option<&'a str>,
}

/// RFC 8785 text of any JSON value.
///
/// # Errors
///
/// [`InputError::MalformedJson`] if the value cannot be canonicalized (e.g. a non-finite number).
pub fn to_canonical_string<T: Serialize>(value: &T) -> Result<String, InputError> {
    serde_json_canonicalizer::to_string(value).map_err(|e| InputError::MalformedJson(e.to_string()))
}

/// Re-canonicalizes stored payload text; used by verification, where the
/// stored text may have been altered into a different (or invalid) form.
///
/// # Errors
///
/// [`InputError::MalformedJson`] if the text is not JSON.
pub fn canonicalize_payload_text(text: &str) -> Result<String, InputError> {
    to_canonical_string(&parse_json_value(text)?)
}

/// Parses JSON text from outside (a `--payload`, an event line) as a value,
/// refusing ambiguous input: a key repeated in any object (which
/// `serde_json` would silently resolve to the last value) or a lone UTF-16
/// surrogate escape (which `serde_json` refuses as it parses strings).
///
/// # Errors
///
/// [`InputError::DuplicateKey`] naming the key and where it is;
/// [`InputError::MalformedJson`] for text that is not JSON.
pub fn parse_json_value(text: &str) -> Result<Value, InputError> {
    check_unambiguous_json(text)?;
    serde_json::from_str(text).map_err(|e| InputError::MalformedJson(e.to_string()))
}

/// Checks that no object in `text` repeats a key, at any depth.
///
/// # Errors
///
/// [`InputError::DuplicateKey`] for the first repeated key;
/// [`InputError::MalformedJson`] for text that is not JSON.
pub fn check_unambiguous_json(text: &str) -> Result<(), InputError> {
    let found = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let checked = serde::de::DeserializeSeed::deserialize(
        KeyCheck {
            at: None,
            found: &found,
        },
        &mut de,
    )
    .and_then(|()| de.end());
    if let Some((path, key)) = found.into_inner() {
        return Err(InputError::DuplicateKey { path, key });
    }
    checked.map_err(|e| InputError::MalformedJson(e.to_string()))
}

/// One step of the path to a value, rendered only when a duplicate is found.
enum Step<'a> {
    Member(&'a str),
    Element(usize),
}

struct PathNode<'a> {
    parent: Option<&'a PathNode<'a>>,
    step: Step<'a>,
}

fn render_path(mut at: Option<&PathNode<'_>>) -> String {
    let mut steps = Vec::new();
    while let Some(node) = at {
        steps.push(match node.step {
            Step::Member(key) => format!(".{}", shown_key(key)),
            Step::Element(i) => format!("[{i}]"),
        });
        at = node.parent;
    }
    steps.reverse();
    format!("${}", steps.concat())
}

/// A key as it may appear in a message: quoted and escaped (no control
/// character is echoed), at most 64 characters.
fn shown_key(key: &str) -> String {
    let short: String = key.chars().take(64).collect();
    if short.len() < key.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

/// Walks a JSON document without building it, remembering the first
/// repeated key (the walk stops there with an error).
struct KeyCheck<'a, 'f> {
    at: Option<&'a PathNode<'a>>,
    found: &'f std::cell::RefCell<Option<(String, String)>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyCheck<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyCheck<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let node = PathNode {
                parent: self.at,
                step: Step::Element(index),
            };
            let seed = KeyCheck {
                at: Some(&node),
                found: self.found,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            index = index.saturating_add(1);
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some((render_path(self.at), shown_key(&key)));
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let node = PathNode {
                parent: self.at,
                step: Step::Member(&key),
            };
            map.next_value_seed(KeyCheck {
                at: Some(&node),
                found: self.found,
            })?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// Why stored or exported payload text is not what append writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredPayloadError {
    /// Not JSON, or nested deeper than append accepts.
    Unreadable(String),
    /// JSON, but not byte-identical to its RFC 8785 form: another text for
    /// (possibly) the same value, e.g. `1.0` for `1` or a number that rounds
    /// to the committed one. Carries the canonical text and what differs.
    NotCanonical {
        /// The RFC 8785 text of the stored value.
        canonical: String,
        /// Where and how the stored text differs, for the finding.
        difference: String,
    },
}

/// Reads payload text from storage or an export with append's rules: valid
/// JSON, no deeper than [`MAX_PAYLOAD_DEPTH`](crate::event::MAX_PAYLOAD_DEPTH),
/// and byte-identical to its RFC 8785 form (what append stores). A pure
/// function, so every verifier (database scans, export files) applies the
/// same rules.
///
/// # Errors
///
/// [`StoredPayloadError`] saying what is wrong; `NotCanonical` carries the
/// canonical text so a verifier can still check the value it denotes.
pub fn parse_stored_payload(text: &str) -> Result<(), StoredPayloadError> {
    // A repeated key is a finding, not merged: append never stores one, and
    // a value chosen by "last wins" could differ from what another reader sees.
    if let Err(InputError::DuplicateKey { path, key }) = check_unambiguous_json(text) {
        return Err(StoredPayloadError::Unreadable(format!(
            "payload repeats key {key} in the object at {path}: ambiguous JSON, which append never stores"
        )));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| StoredPayloadError::Unreadable(format!("payload is not valid JSON ({e})")))?;
    crate::event::check_depth(&value).map_err(|e| StoredPayloadError::Unreadable(e.to_string()))?;
    let canonical =
        to_canonical_string(&value).map_err(|e| StoredPayloadError::Unreadable(e.to_string()))?;
    if canonical == text {
        return Ok(());
    }
    let difference = describe_difference(text, &canonical);
    Err(StoredPayloadError::NotCanonical {
        canonical,
        difference,
    })
}

/// Names the first byte where `stored` and `canonical` differ, with a short
/// excerpt of each from there (escaped, so no control character is echoed).
fn describe_difference(stored: &str, canonical: &str) -> String {
    let at = stored
        .bytes()
        .zip(canonical.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| stored.len().min(canonical.len()));
    // A little context before the difference, so a changed number shows whole.
    let from = at.saturating_sub(16);
    let excerpt = |s: &str| {
        // Back up to a character boundary so the excerpt is valid text.
        let start = (0..=from.min(s.len()))
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        let tail: String = s[start..].chars().take(48).collect();
        format!("{tail:?}")
    };
    format!(
        "payload text is not in RFC 8785 canonical form: at byte {at} it reads {} where the canonical form reads {}",
        excerpt(stored),
        excerpt(canonical)
    )
}

/// Canonical bytes of a stored event, recomputed from its fields.
///
/// # Errors
///
/// [`InputError::MalformedJson`] if the stored payload is not JSON.
pub fn event_canonical_bytes(e: &crate::Event) -> Result<Vec<u8>, InputError> {
    stored_canonical_bytes(&crate::event::StoredEvent::from(e))
}

/// Canonical bytes of a stored event row, recomputed from its fields (the
/// payload text re-canonicalized, as stored text may have been altered).
///
/// # Errors
///
/// [`InputError::MalformedJson`] if the stored payload is not JSON.
pub fn stored_canonical_bytes(e: &crate::event::StoredEvent<'_>) -> Result<Vec<u8>, InputError> {
    let payload = e.payload.map(canonicalize_payload_text).transpose()?;
    Ok(CommittedFields {
        canonical_payload: payload.as_deref(),
        ..e.committed_as_stored()
    }
    .canonical_bytes())
}

impl CommittedFields<'_> {
    /// The canonical bytes that the leaf hash commits to.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            96 + self.chain_id.len()
                + self.ts.len()
                + self.event_type.len()
                + self.actor.map_or(0, str::len)
                + self.canonical_payload.map_or(0, str::len),
        );
        self.write_canonical_bytes(&mut out);
        out
    }

    /// Replaces `out`'s contents with the canonical bytes, so a caller
    /// hashing millions of events reuses one buffer.
    pub fn write_canonical_bytes(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(b"{\"actor\":");
        match self.actor {
            Some(a) => push_json_string(out, a),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"chain_id\":");
        push_json_string(out, self.chain_id);
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(self.canonical_payload.unwrap_or("null").as_bytes());
        out.extend_from_slice(b",\"seq\":");
        push_decimal(out, self.seq);
        out.extend_from_slice(b",\"ts\":");
        push_json_string(out, self.ts);
        out.extend_from_slice(b",\"type\":");
        push_json_string(out, self.event_type);
        out.push(b'}');
    }
}

/// Appends `n` in decimal, as JCS writes an integer below 2^53 (and as
/// stele has always written a seq).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // JCS escapes only '"', '\\' and control characters; text without them
    // (nearly every stored field) is its own JSON string body.
    // A fold without early exit, so the check runs over whole vectors.
    let needs_escape = s.bytes().fold(false, |found, b| {
        found | (b == b'"') | (b == b'\\') | (b < 0x20)
    });
    if !needs_escape {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // JCS string escaping is serde_json's minimal escaping; keep one source of truth.
    match serde_json_canonicalizer::to_vec(&s) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        // Serializing a &str cannot fail; fall back to serde_json's identical escaping.
        Err(_) => out.extend_from_slice(serde_json::to_string(s).unwrap_or_default().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_keys_are_refused_at_every_depth_and_named() {
        for (text, path, key) in [
            (r#"{"a":1,"a":2}"#, "$", "\"a\""),
            (
                r#"{"x":{"b":[1,{"k":0,"k":0}]}}"#,
                "$.\"x\".\"b\"[1]",
                "\"k\"",
            ),
            (r#"[{"q\u0000":1,"q\u0000":1}]"#, "$[0]", "\"q\\0\""),
        ] {
            match super::parse_json_value(text) {
                Err(crate::event::InputError::DuplicateKey { path: p, key: k }) => {
                    assert_eq!((p.as_str(), k.as_str()), (path, key), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
            assert!(matches!(
                super::parse_stored_payload(text),
                Err(super::StoredPayloadError::Unreadable(m)) if m.contains("repeats key")
            ));
        }
        // Distinct keys at different objects are fine; escapes decode first.
        assert!(super::parse_json_value(r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#).is_ok());
        assert!(super::parse_json_value(r#"{"a":1,"\u0061":2}"#).is_err());
        // Lone surrogates never reach a payload (I-JSON forbids them).
        for lone in [r#""\ud800""#, r#"{"a":"x\udc00"}"#, r#"{"\ud800":1}"#] {
            assert!(super::parse_json_value(lone).is_err(), "{lone}");
        }
    }

    use super::*;
    use serde_json::json;

    /// RFC 8785 §3.2.2 / Appendix B vectors (serialization of numbers and strings).
    #[test]
    fn rfc8785_vectors() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canonicalize_payload_text(input).unwrap(), expected);
    }

    /// RFC 8785 §3.2.3: members sorted by UTF-16 code units, recursively.
    #[test]
    fn rfc8785_sorting_vector() {
        let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let out = canonicalize_payload_text(input).unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&out)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v.as_str().unwrap().to_owned())
            .collect();
        // serde_json's map preserves the canonical text order (preserve_order feature).
        assert_eq!(
            keys,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
    }

    /// RFC 8785 Appendix B: IEEE 754 doubles and their canonical text.
    #[test]
    fn rfc8785_number_table() {
        let cases: [(u64, &str); 12] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        ];
        for (bits, expected) in cases {
            let v = f64::from_bits(bits);
            assert_eq!(to_canonical_string(&v).unwrap(), expected, "{bits:#x}");
        }
    }

    #[test]
    fn strings_and_seqs_are_written_as_jcs_writes_them() {
        for s in [
            "",
            "plain text",
            "quote \" inside",
            "back\\slash",
            "\u{0}\u{1f}\n\t",
            "del \u{7f} stays",
            "é € 😀",
            "\u{2028}\u{2029}",
        ] {
            let mut out = Vec::new();
            push_json_string(&mut out, s);
            assert_eq!(out, serde_json_canonicalizer::to_vec(&s).unwrap(), "{s:?}");
        }
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn assembled_bytes_equal_a_full_jcs_pass() {
        let payload =
            to_canonical_string(&json!({"z": [1, {"b": "é", "a": "\u{1}"}], "a": 0.5})).unwrap();
        for (actor, payload) in [
            (Some("alice@example.com"), Some(payload.as_str())),
            (None, None),
            (Some("\"q\""), None),
        ] {
            let f = CommittedFields {
                chain_id: "production",
                seq: 42,
                ts: "2026-01-15T14:00:00.000001Z",
                event_type: "user.login",
                actor,
                canonical_payload: payload,
            };
            let full = json!({
                "type": f.event_type,
                "ts": f.ts,
                "seq": f.seq,
                "payload": payload.map(|p| serde_json::from_str::<Value>(p).unwrap()),
                "chain_id": f.chain_id,
                "actor": actor,
            });
            assert_eq!(
                String::from_utf8(f.canonical_bytes()).unwrap(),
                to_canonical_string(&full).unwrap()
            );
        }
    }
}
