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
    canonical_value_string(&parse_json_value(text)?)
}

/// RFC 8785 text of a JSON value, as [`to_canonical_string`] gives it.
///
/// Trees of strings, booleans, nulls and integers a double holds exactly —
/// nearly every payload — are written here in one pass: members sorted by
/// UTF-16 code units, strings escaped as JCS escapes them. A tree holding
/// any other number goes whole to `serde_json_canonicalizer`, whose
/// ECMAScript number form is not repeated here. Every append and every
/// verified event runs this; the library's pass cost a loaded gateway an
/// eighth of its time. Tests and the `event_json` fuzz target check that
/// both give the same text.
///
/// # Errors
///
/// [`InputError::MalformedJson`] if the value cannot be canonicalized.
pub fn canonical_value_string(value: &Value) -> Result<String, InputError> {
    let mut out = Vec::with_capacity(256);
    if write_plain(&mut out, value) {
        String::from_utf8(out).map_err(|e| InputError::MalformedJson(e.to_string()))
    } else {
        to_canonical_string(value)
    }
}

/// Every integer up to 2^53 in magnitude is exact in a double, so its
/// ECMAScript form is its decimal digits.
pub(crate) const EXACT_INTEGER: u64 = 1 << 53;

/// Writes `n` if it is an integer a double holds exactly (its ECMAScript
/// form is then its digits); false, writing nothing, for any other number.
pub(crate) fn push_exact_integer(out: &mut Vec<u8>, n: &serde_json::Number) -> bool {
    if let Some(u) = n.as_u64().filter(|u| *u <= EXACT_INTEGER) {
        push_decimal(out, u);
    } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= EXACT_INTEGER) {
        // Negative here: a non-negative integer is also a u64.
        out.push(b'-');
        push_decimal(out, i.unsigned_abs());
    } else {
        return false;
    }
    true
}

/// Whether `n` is an integer beyond 2^53 in magnitude, which a double (and
/// so a JavaScript reader) would round.
pub(crate) fn is_imprecise_integer(n: &serde_json::Number) -> bool {
    n.as_u64().is_some_and(|u| u > EXACT_INTEGER)
        || n.as_i64().is_some_and(|i| i.unsigned_abs() > EXACT_INTEGER)
}

/// Writes `value` in RFC 8785 form; false (with `out` partly written) at
/// the first number it leaves to the library.
fn write_plain(out: &mut Vec<u8>, value: &Value) -> bool {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if !push_exact_integer(out, n) {
                return false;
            }
        }
        Value::String(text) => push_json_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !write_plain(out, item) {
                    return false;
                }
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| utf16_order(a.0, b.0));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_string(out, key);
                out.push(b':');
                if !write_plain(out, item) {
                    return false;
                }
            }
            out.push(b'}');
        }
    }
    true
}

/// JCS orders member names by their UTF-16 code units. That is byte order
/// for ASCII names; beyond it, a character above U+FFFF (a surrogate pair,
/// 0xD800..) sorts before U+E000..U+FFFF in UTF-16 but after in UTF-8.
pub(crate) fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
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
        let mut seen = SeenKeys::default();
        while let Some(MemberName(key)) = map.next_key()? {
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

/// A member name, borrowed from the text unless it has escapes: checking a
/// batch's keys allocates next to nothing.
struct MemberName<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::de::Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> serde::de::Visitor<'de> for Name {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MemberName(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MemberName(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(Name)
    }
}

/// The names seen in one object: a short list scanned in place (events and
/// their payloads have a handful of members), a hash set past that, so an
/// object with a million members still checks in linear time.
#[derive(Default)]
struct SeenKeys<'de> {
    few: Vec<std::borrow::Cow<'de, str>>,
    many: std::collections::HashSet<std::borrow::Cow<'de, str>>,
}

impl<'de> SeenKeys<'de> {
    const FEW: usize = 16;

    fn contains(&self, key: &str) -> bool {
        if self.many.is_empty() {
            self.few.iter().any(|k| k == key)
        } else {
            self.many.contains(key)
        }
    }

    fn insert(&mut self, key: std::borrow::Cow<'de, str>) {
        if !self.many.is_empty() {
            self.many.insert(key);
        } else if self.few.len() < Self::FEW {
            self.few.push(key);
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(key);
        }
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
        write_before_seq(out, self.actor, self.chain_id, self.canonical_payload);
        write_from_seq(out, self.seq, self.ts, self.event_type);
    }
}

/// The canonical bytes up to `"seq":`: the members that sort before `seq`,
/// which an event has before storage gives it a seq and a time.
pub(crate) fn write_before_seq(
    out: &mut Vec<u8>,
    actor: Option<&str>,
    chain_id: &str,
    canonical_payload: Option<&str>,
) {
    out.extend_from_slice(b"{\"actor\":");
    match actor {
        Some(a) => push_json_string(out, a),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"chain_id\":");
    push_json_string(out, chain_id);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(canonical_payload.unwrap_or("null").as_bytes());
    out.extend_from_slice(b",\"seq\":");
}

/// The rest of the canonical bytes, from the seq's value on.
pub(crate) fn write_from_seq(out: &mut Vec<u8>, seq: u64, ts: &str, event_type: &str) {
    push_decimal(out, seq);
    out.extend_from_slice(b",\"ts\":");
    push_json_string(out, ts);
    out.extend_from_slice(b",\"type\":");
    push_json_string(out, event_type);
    out.push(b'}');
}

/// Appends `n` in decimal, as JCS writes an integer below 2^53 (and as
/// stele has always written a seq).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
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

pub(crate) fn push_json_string(out: &mut Vec<u8>, s: &str) {
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
        // Past the short list: a repeat among many members is still found.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let repeated = format!("{{{},\"k3\":0}}", many.join(","));
        assert!(matches!(
            super::parse_json_value(&repeated),
            Err(crate::event::InputError::DuplicateKey { key, .. }) if key == "\"k3\""
        ));
        assert!(super::parse_json_value(&format!("{{{}}}", many.join(","))).is_ok());
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

    /// The one-pass writer and the library agree, on values built to hit
    /// every branch: member order across the UTF-16/UTF-8 difference,
    /// escapes, the exact-integer bounds and numbers left to the library.
    #[test]
    fn the_one_pass_writer_gives_the_librarys_text() {
        use rand::{Rng as _, SeedableRng as _};
        let names = [
            "a",
            "b",
            "B",
            "aa",
            "",
            "\u{e000}",
            "\u{1f600}",
            "\u{ffff}",
            "é",
            "\u{7f}",
            "\n",
            "\"q\"",
            "10",
            "1",
        ];
        let strings = [
            "",
            "plain",
            "tab\there",
            "\u{1}\u{1f}",
            "quote\"back\\",
            "\u{2028}",
            "ü\u{10ffff}",
        ];
        let numbers = [
            json!(0),
            json!(-1),
            json!(9_007_199_254_740_992_u64),
            json!(-9_007_199_254_740_992_i64),
            json!(9_007_199_254_740_993_u64),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(-0.0),
            json!(1e21),
            json!(4.5e-7),
        ];
        fn build(
            rng: &mut rand::rngs::StdRng,
            depth: u32,
            names: &[&str],
            strings: &[&str],
            numbers: &[Value],
        ) -> Value {
            match rng.gen_range(0..if depth > 3 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => Value::Bool(rng.gen_range(0..2) == 1),
                2 | 3 => numbers[rng.gen_range(0..numbers.len())].clone(),
                4 => Value::String(strings[rng.gen_range(0..strings.len())].to_owned()),
                5 => Value::Array(
                    (0..rng.gen_range(0..4))
                        .map(|_| build(rng, depth + 1, names, strings, numbers))
                        .collect(),
                ),
                _ => Value::Object(
                    (0..rng.gen_range(0..6))
                        .map(|_| {
                            (
                                names[rng.gen_range(0..names.len())].to_owned(),
                                build(rng, depth + 1, names, strings, numbers),
                            )
                        })
                        .collect(),
                ),
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(8785);
        let mut plain = 0;
        for _ in 0..20_000 {
            let value = build(&mut rng, 0, &names, &strings, &numbers);
            let library = serde_json_canonicalizer::to_string(&value).unwrap();
            assert_eq!(canonical_value_string(&value).unwrap(), library, "{value}");
            plain += usize::from(write_plain(&mut Vec::new(), &value));
        }
        // Both paths were taken many times.
        assert!(
            (2_000..18_000).contains(&plain),
            "{plain} of 20000 on the one-pass path"
        );
    }

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
