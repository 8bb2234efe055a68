//! A payload read from JSON text without building a `serde_json::Value`.
//!
//! The gateway reads every event of a batch from the request's text. A
//! `Value` costs an allocation per string and a hashed map per object
//! (`preserve_order` is on for anchors' sake), and is thrown away once the
//! payload's canonical text is written. A [`PayloadTree`] borrows each
//! string the text holds without escapes and keeps an object's members in
//! a plain list, sorted only when written. Its rules and its output are
//! those of the `Value` path (`EventInput::validate`): the tests and the
//! `event_json` fuzz target compare the two.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::canonical::{
    canonical_value_string, is_imprecise_integer, push_exact_integer, push_json_string,
};
use crate::event::{InputError, MAX_PAYLOAD_DEPTH};

/// A JSON value as parsed, borrowing from the text where it can.
#[derive(Debug)]
pub struct PayloadTree<'a>(Node<'a>);

#[derive(Debug)]
enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl PayloadTree<'_> {
    /// Whether the payload is JSON `null` (the same as no payload).
    pub fn is_null(&self) -> bool {
        matches!(self.0, Node::Null)
    }

    /// The payload's RFC 8785 text, checked as `EventInput::validate`
    /// checks a payload: nesting depth first, then integers beyond 2^53.
    ///
    /// # Errors
    ///
    /// [`InputError::TooDeep`], [`InputError::ImpreciseNumber`], or
    /// [`InputError::DuplicateKey`] for an object repeating a key (text
    /// from outside is checked for that before it is parsed; this is the
    /// last line).
    pub fn canonical_string(&self) -> Result<String, InputError> {
        let depth = self.0.depth(0);
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(InputError::TooDeep {
                depth,
                limit: MAX_PAYLOAD_DEPTH,
            });
        }
        self.0.check_numbers()?;
        let mut out = Vec::with_capacity(256);
        if self.0.write_plain(&mut out)? {
            String::from_utf8(out).map_err(|e| InputError::MalformedJson(e.to_string()))
        } else {
            self.0.check_unique_keys()?;
            canonical_value_string(&self.0.to_value())
        }
    }
}

impl Node<'_> {
    /// As `event::check_depth` counts: a scalar is at the depth of its
    /// container, a container one deeper than its deepest child's container.
    fn depth(&self, at: usize) -> usize {
        if at > MAX_PAYLOAD_DEPTH {
            return at;
        }
        match self {
            Node::Array(items) => items
                .iter()
                .map(|v| v.depth(at + 1))
                .fold(at + 1, usize::max),
            Node::Object(members) => members
                .iter()
                .map(|(_, v)| v.depth(at + 1))
                .fold(at + 1, usize::max),
            _ => at,
        }
    }

    fn check_numbers(&self) -> Result<(), InputError> {
        match self {
            Node::Number(n) if is_imprecise_integer(n) => {
                Err(InputError::ImpreciseNumber(n.to_string()))
            }
            Node::Array(items) => items.iter().try_for_each(Node::check_numbers),
            Node::Object(members) => members.iter().try_for_each(|(_, v)| v.check_numbers()),
            _ => Ok(()),
        }
    }

    /// `canonical::write_plain` over the tree: false (with `out` partly
    /// written) at the first number it leaves to the library.
    fn write_plain(&self, out: &mut Vec<u8>) -> Result<bool, InputError> {
        match self {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::Number(n) => {
                if !push_exact_integer(out, n) {
                    return Ok(false);
                }
            }
            Node::String(text) => push_json_string(out, text),
            Node::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    if !item.write_plain(out)? {
                        return Ok(false);
                    }
                }
                out.push(b']');
            }
            Node::Object(members) => {
                let mut sorted: Vec<&(Cow<'_, str>, Node<'_>)> = members.iter().collect();
                sorted.sort_unstable_by(|a, b| crate::canonical::utf16_order(&a.0, &b.0));
                if let Some(pair) = sorted.windows(2).find(|pair| pair[0].0 == pair[1].0) {
                    return Err(repeated_key(&pair[0].0));
                }
                out.push(b'{');
                for (i, (key, item)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_json_string(out, key);
                    out.push(b':');
                    if !item.write_plain(out)? {
                        return Ok(false);
                    }
                }
                out.push(b'}');
            }
        }
        Ok(true)
    }

    /// What `write_plain` checks of each object it writes, for a tree it
    /// left unwritten.
    fn check_unique_keys(&self) -> Result<(), InputError> {
        match self {
            Node::Array(items) => items.iter().try_for_each(Node::check_unique_keys),
            Node::Object(members) => {
                let mut keys: Vec<&str> = members.iter().map(|(k, _)| &**k).collect();
                keys.sort_unstable();
                if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
                    return Err(repeated_key(pair[0]));
                }
                members.iter().try_for_each(|(_, v)| v.check_unique_keys())
            }
            _ => Ok(()),
        }
    }

    /// The same value as a `serde_json::Value`, for the numbers left to
    /// `serde_json_canonicalizer` (rare: non-integers).
    fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.clone().into_owned()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

fn repeated_key(key: &str) -> InputError {
    InputError::DuplicateKey {
        path: "the payload".into(),
        key: format!("{:?}", key.chars().take(80).collect::<String>()),
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for PayloadTree<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(PayloadTree)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        // As `Value` reads it: a non-finite float (none parses from JSON
        // text) would be null.
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(NodeSeed)? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            members.push((key, map.next_value_seed(NodeSeed)?));
        }
        Ok(Node::Object(members))
    }
}

struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A member name, borrowed when the text holds it without escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree's canonical text, or its error, next to the `Value` path's.
    fn both(text: &str) -> (Result<String, InputError>, Result<String, InputError>) {
        let tree: PayloadTree<'_> = serde_json::from_str(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        let by_value = crate::event::check_depth(&value)
            .and_then(|()| crate::event::check_numbers(&value))
            .and_then(|()| canonical_value_string(&value));
        (tree.canonical_string(), by_value)
    }

    #[test]
    fn gives_the_value_paths_text_and_errors() {
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        for text in [
            r#"{"b":1,"a":[true,false,null,-5,"x\"y\u0001"],"é":{},"😀":0,"\uE000":1}"#,
            r#"{"n":1.5e3,"m":-0.0,"k":[1e-7,123456789012.5]}"#,
            r#"{"big":9007199254740992,"neg":-9007199254740992}"#,
            r#"{"big":9007199254740993}"#,
            r#"[-9007199254740993]"#,
            r#""plain \n text""#,
            "[]",
            "{}",
            "0",
            &deep,
            &format!("{}1{}", r#"{"a":"#.repeat(64), "}".repeat(64)),
            &format!("{}1{}", r#"{"a":["#.repeat(33), "]}".repeat(33)),
            &format!("{}1{}", "[".repeat(65), "]".repeat(65)),
        ] {
            let (tree, value) = both(text);
            match (&tree, &value) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                _ => panic!("{text}: tree {tree:?}, value {value:?}"),
            }
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let tree: PayloadTree<'_> =
            serde_json::from_str(r#"{"plain":"text","esc\n":"a\tb"}"#).unwrap();
        let Node::Object(members) = &tree.0 else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(members[0].1, Node::String(Cow::Borrowed("text"))));
        assert!(matches!(members[1].0, Cow::Owned(_)));
    }

    #[test]
    fn a_repeated_key_is_refused_not_resolved() {
        for text in [r#"{"a":1,"b":2,"a":3}"#, r#"{"x":[{"a":1,"a":2}],"y":0.5}"#] {
            let tree: PayloadTree<'_> = serde_json::from_str(text).unwrap();
            let err = tree.canonical_string().unwrap_err();
            assert!(
                matches!(err, InputError::DuplicateKey { .. }),
                "{text}: {err:?}"
            );
        }
    }
}
