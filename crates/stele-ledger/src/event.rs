//! The event model: what a client sends, what the ledger commits, and the
//! limits every input is checked against before anything is written.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tlog_tiles::Hash;

use crate::canonical::CommittedFields;
use crate::payload::PayloadTree;

/// Input rejected before anything was written. Every variant says what was
/// wrong and, where it helps, what to do instead.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// The chain id does not match `[a-z0-9][a-z0-9._-]{0,63}`.
    #[error(
        "invalid chain id {0:?}: use 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidChainId(String),
    /// The event type is empty, too long or has characters outside the allowed set.
    #[error(
        "invalid event type {0:?}: use 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '/' or '-', e.g. user.login"
    )]
    InvalidType(String),
    /// The event type is in a namespace stele writes itself (`evidence.*`,
    /// `stele.*`): a client could otherwise forge the records stele acts on.
    #[error(
        "event type {0:?} is reserved: types in the `evidence.` and `stele.` namespaces are written only by stele itself (evidence records come from the evidence vault); choose another type"
    )]
    ReservedType(String),
    /// The payload nests arrays and objects deeper than [`MAX_PAYLOAD_DEPTH`].
    #[error(
        "payload nests arrays/objects {depth} deep, over the limit of {limit}; flatten it (every verifier must be able to parse what is appended)"
    )]
    TooDeep {
        /// Nesting depth found (counted up to one past the limit).
        depth: usize,
        /// [`MAX_PAYLOAD_DEPTH`].
        limit: usize,
    },
    /// The actor is too long or contains control characters.
    #[error("invalid actor: {0}")]
    InvalidActor(String),
    /// The idempotency key is empty, too long or not printable ASCII.
    #[error("invalid idempotency key: use 1-128 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// The payload's canonical form is larger than the configured limit.
    #[error(
        "payload is {size} bytes in canonical form, over the limit of {limit} bytes (raise the configured limit if this is intended)"
    )]
    PayloadTooLarge {
        /// Canonical size of the payload.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A number in the payload cannot be represented exactly as an IEEE double,
    /// so RFC 8785 canonicalization would silently change it.
    #[error(
        "payload number {0} is outside ±2^53 and would lose precision in canonical form; send it as a string"
    )]
    ImpreciseNumber(String),
    /// The JSON was malformed or had the wrong shape.
    #[error("malformed event JSON: {0}")]
    MalformedJson(String),
    /// A hash was not 64 hex characters.
    #[error("malformed hash {0:?}: expected 64 hex characters")]
    BadHash(String),
    /// A timestamp was not RFC 3339 UTC with microseconds.
    #[error("malformed timestamp {0:?}: expected RFC 3339 UTC like 2026-01-15T14:00:00.000000Z")]
    BadTimestamp(String),
    /// A key id does not match `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid key id {0:?}: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")]
    InvalidKeyId(String),
    /// A key id was well-formed but no such key is held.
    #[error("unknown HMAC key id {0:?}: it is not in the keyring")]
    UnknownKeyId(String),
    /// An object names the same member twice: JSON parsers disagree on which
    /// value counts (RFC 8785 inputs are I-JSON, RFC 7493, which forbids it).
    #[error(
        "ambiguous JSON: key {key} appears twice in the object at {path}; parsers disagree on which value counts (send each key once)"
    )]
    DuplicateKey {
        /// Where the object is (`$` is the top, `$.a[0]` a member's element).
        path: String,
        /// The repeated key, quoted and shortened.
        key: String,
    },
}

/// Deepest nesting of arrays and objects accepted in a payload (a scalar is
/// depth 0, `{"a":[1]}` depth 2).
///
/// One limit for append and for every verifier: the deepest document any
/// verifier parses is a payload inside an export line or a tlog-proof's
/// event bytes, a few levels below `serde_json`'s fixed recursion limit of
/// 128, so a payload append accepts always parses again. Stored or exported
/// payloads deeper than this are findings.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Event-type namespaces stele writes itself and refuses from clients:
/// evidence records are acted on by verification (it reads the objects they
/// name), and `stele.` is kept for stele's own future records.
pub const RESERVED_TYPE_NAMESPACES: [&str; 2] = ["evidence", "stele"];

/// Whether `event_type` is in a reserved namespace (ASCII case-insensitive,
/// so a look-alike such as `Evidence.uploaded` is refused too).
pub fn is_reserved_type(event_type: &str) -> bool {
    let namespace = event_type.split('.').next().unwrap_or_default();
    RESERVED_TYPE_NAMESPACES
        .iter()
        .any(|r| namespace.eq_ignore_ascii_case(r))
}

/// Limits applied to every event before it is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, measured on its canonical (RFC 8785) bytes.
    pub max_payload_bytes: usize,
}

impl Limits {
    /// 64 KiB: large enough for any audit record, small enough that a
    /// mistaken upload of a document is refused rather than committed forever.
    pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: Self::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

/// What a client supplies for one event; the ledger assigns `seq` and `ts`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Event type, e.g. `user.login`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who did it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Any JSON; `null` is the same as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// A retry with the same key returns the original receipt and appends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// An [`EventInput`] that passed validation, with its payload already in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidEvent {
    /// Event type.
    pub event_type: String,
    /// Actor, if any.
    pub actor: Option<String>,
    /// RFC 8785 text of the payload, if any.
    pub payload: Option<String>,
    /// Idempotency key, if any.
    pub idempotency_key: Option<String>,
}

impl EventInput {
    /// Parses one event from JSON text (one line of a JSONL batch).
    ///
    /// # Errors
    ///
    /// [`InputError::MalformedJson`] if the text is not an event object;
    /// [`InputError::DuplicateKey`] if any object in it repeats a key.
    pub fn from_json(text: &str) -> Result<Self, InputError> {
        crate::canonical::check_unambiguous_json(text)?;
        serde_json::from_str(text).map_err(|e| InputError::MalformedJson(e.to_string()))
    }

    /// Checks a client's event against every rule and `limits`,
    /// canonicalizing the payload. Types in a reserved namespace
    /// ([`is_reserved_type`]) are refused: this is the path for everything a
    /// client sends (CLI, batch, gateway).
    ///
    /// # Errors
    ///
    /// The first rule broken, as an [`InputError`].
    pub fn validate(self, limits: &Limits) -> Result<ValidEvent, InputError> {
        refuse_reserved(&self.event_type)?;
        self.validate_internal(limits)
    }

    /// [`validate`](Self::validate) for the records stele writes itself
    /// (the evidence vault's `evidence.*` events): the same rules, except
    /// that reserved types are allowed. Never call it with a client's input.
    ///
    /// # Errors
    ///
    /// The first rule broken, as an [`InputError`].
    pub fn validate_internal(self, limits: &Limits) -> Result<ValidEvent, InputError> {
        check_fields(
            &self.event_type,
            self.actor.as_deref(),
            self.idempotency_key.as_deref(),
        )?;
        let payload = match self.payload {
            None | Some(Value::Null) => None,
            Some(value) => {
                check_depth(&value)?;
                check_numbers(&value)?;
                let text = crate::canonical::canonical_value_string(&value)?;
                Some(within_limit(text, limits)?)
            }
        };
        Ok(ValidEvent {
            event_type: self.event_type,
            actor: self.actor,
            payload,
            idempotency_key: self.idempotency_key,
        })
    }
}

/// An event read from JSON text as the gateway reads a batch: the fields
/// and rules of [`EventInput`], with the payload parsed into a
/// [`PayloadTree`] that borrows from the text, not into a `Value` built only
/// to be written out again in canonical form.
#[derive(Debug, Deserialize)]
// Named as the input it reads, for the same error messages.
#[serde(deny_unknown_fields, expecting = "struct EventInput")]
pub struct EventText<'a> {
    /// Event type, e.g. `user.login`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who did it, if known.
    #[serde(default)]
    pub actor: Option<String>,
    /// Any JSON; `null` is the same as absent.
    #[serde(default, borrow)]
    pub payload: Option<PayloadTree<'a>>,
    /// A retry with the same key returns the original receipt and appends nothing.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl<'a> EventText<'a> {
    /// Parses one event from JSON text, as [`EventInput::from_json`] does.
    ///
    /// # Errors
    ///
    /// [`InputError::MalformedJson`] if the text is not an event object;
    /// [`InputError::DuplicateKey`] if any object in it repeats a key.
    pub fn from_json(text: &'a str) -> Result<Self, InputError> {
        crate::canonical::check_unambiguous_json(text)?;
        serde_json::from_str(text).map_err(|e| InputError::MalformedJson(e.to_string()))
    }

    /// [`EventInput::validate`]: every rule, reserved types refused, the
    /// payload canonicalized; the same event and the same first error.
    ///
    /// # Errors
    ///
    /// The first rule broken, as an [`InputError`].
    pub fn validate(self, limits: &Limits) -> Result<ValidEvent, InputError> {
        refuse_reserved(&self.event_type)?;
        check_fields(
            &self.event_type,
            self.actor.as_deref(),
            self.idempotency_key.as_deref(),
        )?;
        let payload = match self.payload {
            Some(tree) if !tree.is_null() => Some(within_limit(tree.canonical_string()?, limits)?),
            _ => None,
        };
        Ok(ValidEvent {
            event_type: self.event_type,
            actor: self.actor,
            payload,
            idempotency_key: self.idempotency_key,
        })
    }
}

/// A client may not send types of a reserved namespace (a malformed one is
/// refused as malformed first).
fn refuse_reserved(event_type: &str) -> Result<(), InputError> {
    if is_reserved_type(event_type) {
        validate_event_type(event_type)?;
        return Err(InputError::ReservedType(
            event_type.chars().take(80).collect(),
        ));
    }
    Ok(())
}

/// The rules for an event's fields other than its payload.
fn check_fields(
    event_type: &str,
    actor: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<(), InputError> {
    validate_event_type(event_type)?;
    if let Some(actor) = actor {
        if actor.len() > 256 {
            return Err(InputError::InvalidActor("longer than 256 bytes".into()));
        }
        if actor.chars().any(char::is_control) {
            return Err(InputError::InvalidActor(
                "contains control characters".into(),
            ));
        }
    }
    if let Some(key) = idempotency_key {
        let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if key.is_empty() || key.len() > 128 || !printable {
            return Err(InputError::InvalidIdempotencyKey);
        }
    }
    Ok(())
}

/// A canonical payload, if within `limits`.
fn within_limit(text: String, limits: &Limits) -> Result<String, InputError> {
    if text.len() > limits.max_payload_bytes {
        return Err(InputError::PayloadTooLarge {
            size: text.len(),
            limit: limits.max_payload_bytes,
        });
    }
    Ok(text)
}

fn validate_event_type(t: &str) -> Result<(), InputError> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InputError::InvalidType(t.chars().take(80).collect()))
    }
}

/// Refuses a value nested deeper than [`MAX_PAYLOAD_DEPTH`]. Recursion is
/// bounded: `serde_json` builds no value deeper than 128.
pub(crate) fn check_depth(value: &Value) -> Result<(), InputError> {
    fn depth(value: &Value, at: usize) -> usize {
        if at > MAX_PAYLOAD_DEPTH {
            return at;
        }
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => return at,
        };
        children.map(|v| depth(v, at + 1)).fold(at + 1, usize::max)
    }
    let found = depth(value, 0);
    if found > MAX_PAYLOAD_DEPTH {
        Err(InputError::TooDeep {
            depth: found,
            limit: MAX_PAYLOAD_DEPTH,
        })
    } else {
        Ok(())
    }
}

pub(crate) fn check_numbers(value: &Value) -> Result<(), InputError> {
    match value {
        Value::Number(n) if crate::canonical::is_imprecise_integer(n) => {
            Err(InputError::ImpreciseNumber(n.to_string()))
        }
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// A server-assigned event time: UTC, microsecond precision, always rendered
/// as `YYYY-MM-DDTHH:MM:SS.ffffffZ` so the text in canonical bytes is unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Truncates `t` to microseconds and converts it to UTC.
    pub fn from_datetime(t: OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        let micros = t.nanosecond() / 1000 * 1000;
        Self(t.replace_nanosecond(micros).unwrap_or(t))
    }

    /// Parses the canonical text form (any RFC 3339 time is accepted and normalized).
    ///
    /// # Errors
    ///
    /// [`InputError::BadTimestamp`] if `s` is not RFC 3339.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_datetime)
            .map_err(|_| InputError::BadTimestamp(s.chars().take(80).collect()))
    }

    /// The underlying time.
    pub fn datetime(&self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

/// One committed event, exactly as stored and exported: every committed
/// field plus the key id and hashes that bind it into the chain and tree.
///
/// Fields are kept as stored text (not re-validated types) so that a
/// verifier can read a tampered row and say what is wrong with it instead
/// of failing to load it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The chain the event belongs to.
    pub chain_id: String,
    /// 0-based position in the chain; also its Merkle leaf index.
    pub seq: u64,
    /// Server time, RFC 3339 UTC with microseconds.
    pub ts: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Actor, if any.
    pub actor: Option<String>,
    /// Payload as JSON text (RFC 8785 form when written by stele).
    #[serde(with = "raw_json", default)]
    pub payload: Option<String>,
    /// Client idempotency key, if any. Not part of the canonical bytes.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// HMAC key the event was chained with.
    pub key_id: String,
    /// Hex RFC 6962 leaf hash of the canonical bytes.
    pub leaf_hash: String,
    /// Hex HMAC chain hash.
    pub event_hash: String,
}

/// One event row as stored, borrowed from wherever it was read (a database
/// row buffer, an [`Event`] parsed from an export), so a verifier can read
/// millions of rows without copying each into owned strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    /// The chain the row claims.
    pub chain_id: &'a str,
    /// The row's seq.
    pub seq: u64,
    /// Timestamp text.
    pub ts: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Actor, if any.
    pub actor: Option<&'a str>,
    /// Payload text, if any.
    pub payload: Option<&'a str>,
    /// Client idempotency key, if any.
    pub idempotency_key: Option<&'a str>,
    /// HMAC key id.
    pub key_id: &'a str,
    /// Stored leaf hash.
    pub leaf_hash: StoredHash<'a>,
    /// Stored HMAC chain hash.
    pub event_hash: StoredHash<'a>,
}

impl StoredEvent<'_> {
    /// The committed fields, with the payload text taken as stored.
    pub fn committed_as_stored(&self) -> CommittedFields<'_> {
        CommittedFields {
            chain_id: self.chain_id,
            seq: self.seq,
            ts: self.ts,
            event_type: self.event_type,
            actor: self.actor,
            canonical_payload: self.payload,
        }
    }

    /// The owned form, as exported.
    pub fn to_event(&self) -> Event {
        Event {
            chain_id: self.chain_id.to_owned(),
            seq: self.seq,
            ts: self.ts.to_owned(),
            event_type: self.event_type.to_owned(),
            actor: self.actor.map(str::to_owned),
            payload: self.payload.map(str::to_owned),
            idempotency_key: self.idempotency_key.map(str::to_owned),
            key_id: self.key_id.to_owned(),
            leaf_hash: self.leaf_hash.to_hex(),
            event_hash: self.event_hash.to_hex(),
        }
    }
}

impl<'a> From<&'a Event> for StoredEvent<'a> {
    fn from(e: &'a Event) -> Self {
        Self {
            chain_id: &e.chain_id,
            seq: e.seq,
            ts: &e.ts,
            event_type: &e.event_type,
            actor: e.actor.as_deref(),
            payload: e.payload.as_deref(),
            idempotency_key: e.idempotency_key.as_deref(),
            key_id: &e.key_id,
            leaf_hash: StoredHash::Hex(&e.leaf_hash),
            event_hash: StoredHash::Hex(&e.event_hash),
        }
    }
}

/// Lets a verifier take a row or a reference to one alike.
impl<'a> From<&StoredEvent<'a>> for StoredEvent<'a> {
    fn from(e: &StoredEvent<'a>) -> Self {
        *e
    }
}

/// A stored hash field, in the form its source keeps it. Whatever is
/// stored is kept as it is, so a verifier can name a value that is not a
/// hash at all instead of failing to read the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredHash<'a> {
    /// Raw bytes, as a database stores them (32 when intact).
    Bytes(&'a [u8]),
    /// Hex text, as an export carries it (64 characters when intact).
    Hex(&'a str),
}

impl StoredHash<'_> {
    /// The hash, or `None` if what is stored is not 32 bytes (64 hex characters).
    pub fn parse(&self) -> Option<Hash> {
        match self {
            Self::Bytes(bytes) => <[u8; 32]>::try_from(*bytes).ok().map(Hash),
            Self::Hex(text) => crate::parse_hex_hash(text).ok(),
        }
    }

    /// Lowercase hex of stored bytes, or stored text as it is.
    pub fn to_hex(&self) -> String {
        match self {
            Self::Bytes(bytes) => crate::hex_bytes(bytes),
            Self::Hex(text) => (*text).to_owned(),
        }
    }
}

/// (De)serializes JSON text as an embedded JSON value, so exports carry the
/// payload as JSON rather than as a string with escaped quotes.
mod raw_json {
    use super::{Deserialize, RawValue};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(text) => match RawValue::from_string(text.clone()) {
                Ok(raw) => serde::Serialize::serialize(&raw, s),
                // A tampered row may hold text that is not JSON; export it
                // visibly as a string rather than failing the whole export.
                Err(_) => s.serialize_str(text),
            },
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
        Ok(raw.map(|r| r.get().to_owned()).filter(|t| t != "null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(payload: Value) -> EventInput {
        EventInput {
            event_type: "user.login".into(),
            payload: Some(payload),
            ..Default::default()
        }
    }

    /// The library says what is wrong; the CLI names its own commands,
    /// flags and config keys.
    #[test]
    fn input_errors_name_no_cli_commands_flags_or_config_keys() {
        let errors = [
            InputError::ReservedType("stele.anchor".into()),
            InputError::UnknownKeyId("k9".into()),
            InputError::PayloadTooLarge { size: 9, limit: 8 },
        ];
        let texts = errors
            .iter()
            .map(ToString::to_string)
            .chain([crate::checkpoint::CheckpointError::BadVerifierKey.to_string()]);
        for text in texts {
            for word in [
                "`stele ",
                "stele keys",
                "stele init",
                "--",
                "AUDIT_",
                "STELE_",
                "max_payload_bytes",
            ] {
                assert!(!text.contains(word), "{word:?} in {text}");
            }
        }
    }

    #[test]
    fn payload_is_canonicalized() {
        let v = input(json!({"b": 1.0, "a": [true, null, "x"]}))
            .validate(&Limits::default())
            .unwrap();
        assert_eq!(v.payload.as_deref(), Some(r#"{"a":[true,null,"x"],"b":1}"#));
    }

    #[test]
    fn null_payload_is_absent() {
        let v = input(Value::Null).validate(&Limits::default()).unwrap();
        assert_eq!(v.payload, None);
    }

    #[test]
    fn oversized_payload_is_refused() {
        let limits = Limits {
            max_payload_bytes: 100,
        };
        let err = input(json!({"x": "y".repeat(200)}))
            .validate(&limits)
            .unwrap_err();
        assert!(
            matches!(err, InputError::PayloadTooLarge { limit: 100, .. }),
            "{err}"
        );
    }

    #[test]
    fn reserved_types_are_refused_from_clients_only() {
        for t in [
            "evidence.uploaded",
            "evidence.legal_hold",
            "Evidence.uploaded",
            "stele.anything",
            "STELE.x",
            "evidence",
        ] {
            let e = EventInput {
                event_type: t.into(),
                ..Default::default()
            };
            assert!(
                matches!(
                    e.clone().validate(&Limits::default()),
                    Err(InputError::ReservedType(_))
                ),
                "{t}"
            );
            assert!(e.validate_internal(&Limits::default()).is_ok(), "{t}");
        }
        for t in ["evidenced.x", "user.stele", "my.evidence.uploaded"] {
            let e = EventInput {
                event_type: t.into(),
                ..Default::default()
            };
            assert!(e.validate(&Limits::default()).is_ok(), "{t}");
        }
    }

    #[test]
    fn payload_depth_is_limited() {
        let nested = |depth: usize| -> Value {
            serde_json::from_str(&format!("{}{}", "[".repeat(depth), "]".repeat(depth))).unwrap()
        };
        assert!(
            input(nested(MAX_PAYLOAD_DEPTH))
                .validate(&Limits::default())
                .is_ok()
        );
        let err = input(nested(MAX_PAYLOAD_DEPTH + 1))
            .validate(&Limits::default())
            .unwrap_err();
        assert!(matches!(err, InputError::TooDeep { .. }), "{err}");
        let object_depth = input(serde_json::json!({"a": [{"b": 1}]}));
        assert!(object_depth.validate(&Limits::default()).is_ok());
    }

    #[test]
    fn imprecise_numbers_are_refused() {
        let err = input(json!({"n": 9_007_199_254_740_993_u64}))
            .validate(&Limits::default())
            .unwrap_err();
        assert!(matches!(err, InputError::ImpreciseNumber(_)));
        assert!(
            input(json!({"n": 9_007_199_254_740_992_u64}))
                .validate(&Limits::default())
                .is_ok()
        );
        assert!(
            input(json!([-9_007_199_254_740_993_i64]))
                .validate(&Limits::default())
                .is_err()
        );
    }

    #[test]
    fn bad_fields_are_refused() {
        let bad_type = EventInput {
            event_type: "has space".into(),
            ..Default::default()
        };
        assert!(matches!(
            bad_type.validate(&Limits::default()),
            Err(InputError::InvalidType(_))
        ));
        let empty_type = EventInput::default();
        assert!(matches!(
            empty_type.validate(&Limits::default()),
            Err(InputError::InvalidType(_))
        ));
        let bad_actor = EventInput {
            event_type: "a".into(),
            actor: Some("x\ny".into()),
            ..Default::default()
        };
        assert!(matches!(
            bad_actor.validate(&Limits::default()),
            Err(InputError::InvalidActor(_))
        ));
        let bad_key = EventInput {
            event_type: "a".into(),
            idempotency_key: Some("a b".into()),
            ..Default::default()
        };
        assert!(matches!(
            bad_key.validate(&Limits::default()),
            Err(InputError::InvalidIdempotencyKey)
        ));
    }

    #[test]
    fn malformed_and_unknown_fields_are_refused() {
        assert!(matches!(
            EventInput::from_json("{\"type\":"),
            Err(InputError::MalformedJson(_))
        ));
        assert!(matches!(
            EventInput::from_json(r#"{"type":"a","tpye":"b"}"#),
            Err(InputError::MalformedJson(_))
        ));
        assert!(matches!(
            EventInput::from_json("[1]"),
            Err(InputError::MalformedJson(_))
        ));
    }

    #[test]
    fn timestamps_render_with_microseconds() {
        let ts = Timestamp::parse("2026-01-15T14:00:00.1234567+01:00").unwrap();
        assert_eq!(ts.to_string(), "2026-01-15T13:00:00.123456Z");
        assert_eq!(Timestamp::parse(&ts.to_string()).unwrap(), ts);
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn event_export_round_trips_payload_as_json() {
        let e = Event {
            chain_id: "c".into(),
            seq: 0,
            ts: "2026-01-15T13:00:00.123456Z".into(),
            event_type: "a".into(),
            actor: None,
            payload: Some(r#"{"a":1}"#.into()),
            idempotency_key: None,
            key_id: "k1".into(),
            leaf_hash: "00".repeat(32),
            event_hash: "11".repeat(32),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains(r#""payload":{"a":1}"#), "{line}");
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }
}
