//! Decodes a [`Node`] tree into typed config structs with serde, keeping positions.
//!
//! Every error carries the position of the node it came from: an unknown field points
//! at the key, a bad value at the value. Unknown fields name the nearest valid one.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{Mark, Node, Value};

/// An error found while decoding one node, with where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub mark: Option<Mark>,
    pub message: String,
    /// For an unknown field: its name and the valid ones, so a caller that knows more
    /// valid names (a component's common keys) can suggest better.
    pub(crate) unknown_field: Option<(String, &'static [&'static str])>,
}

impl DecodeError {
    /// A component's own check failed: the error points at `key` of `body`, or at the
    /// component when the key is not written.
    pub(crate) fn at_key(body: &Node, key: &str, message: String) -> Self {
        Self::at_path(body, &[key], message)
    }

    /// Like [`DecodeError::at_key`] for a nested key (`["tls", "cert_file"]`): the
    /// error points at the deepest part of the path that is written.
    pub(crate) fn at_path(body: &Node, path: &[&str], message: String) -> Self {
        let mut node = body;
        for key in path {
            match node.get(key) {
                Some(inner) => node = inner,
                None => break,
            }
        }
        DecodeError {
            mark: Some(node.mark),
            message,
            unknown_field: None,
        }
    }

    fn at(mut self, mark: Mark) -> Self {
        self.mark.get_or_insert(mark);
        self
    }
}

/// Refuses `value` outside `min..=max` (and a NaN), at `path` of `body`; the message
/// names the setting and its bounds. Components state their limits with it, so what
/// `validate` accepts, `run` can do.
pub(crate) fn within<T: PartialOrd + fmt::Display>(
    body: &Node,
    path: &[&str],
    value: T,
    min: T,
    max: T,
) -> Result<(), DecodeError> {
    if value >= min && value <= max {
        return Ok(());
    }
    let name = path.join(".");
    Err(DecodeError::at_path(
        body,
        path,
        format!("`{name}` must be from {min} to {max}, found {value}"),
    ))
}

/// Gives an error without a position the position of the node being decoded.
fn at(mark: Mark) -> impl Fn(DecodeError) -> DecodeError {
    move |e| e.at(mark)
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError {
            mark: None,
            message: msg.to_string(),
            unknown_field: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DecodeError {
            unknown_field: Some((field.to_string(), expected)),
            ..de::Error::custom(unknown_name("field", field, expected))
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(unknown_name("value", variant, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing field `{field}`; add `{field}: ...` here"))
    }
}

/// "unknown field `x`; did you mean `y`?" with the list of valid names as the fallback.
pub(crate) fn unknown_name(what: &str, found: &str, expected: &[&str]) -> String {
    match nearest(found, expected.iter().copied()) {
        Some(best) => format!("unknown {what} `{found}`; did you mean `{best}`?"),
        None if expected.is_empty() => {
            format!("unknown {what} `{found}`; nothing is expected here")
        }
        None => format!(
            "unknown {what} `{found}`; expected one of: {}",
            expected.join(", ")
        ),
    }
}

/// The candidate closest to `found`, if any is close enough to be a plausible typo.
pub(crate) fn nearest<'a>(
    found: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(found, c), c))
        .filter(|(distance, c)| *distance <= (c.len().max(found.len()) / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Decodes `node` into `T`.
pub(crate) fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node) -> Result<T, DecodeError> {
    T::deserialize(NodeDeserializer(node))
}

pub(crate) struct NodeDeserializer<'a>(pub &'a Node);

impl NodeDeserializer<'_> {
    fn scalar(&self, expected: &str) -> Result<&str, DecodeError> {
        match &self.0.value {
            Value::Scalar { text, .. } => Ok(text),
            _ => Err(de::Error::custom(format!(
                "expected {expected}, found {}",
                self.0.kind()
            ))),
        }
    }

    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, DecodeError> {
        let text = self.scalar(expected)?;
        text.trim()
            .replace('_', "")
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {expected}, found `{text}`")))
    }
}

macro_rules! number {
    ($method:ident, $visit:ident, $ty:ty, $what:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
            let mark = self.0.mark;
            let n: $ty = self.parse($what).map_err(at(mark))?;
            visitor.$visit(n).map_err(at(mark))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        let result = match &self.0.value {
            Value::Scalar { .. } if self.0.is_null() => visitor.visit_unit(),
            Value::Scalar { text, plain: true } => match text.as_str() {
                "true" | "True" | "TRUE" => visitor.visit_bool(true),
                "false" | "False" | "FALSE" => visitor.visit_bool(false),
                t => {
                    if let Ok(i) = t.parse::<i64>() {
                        visitor.visit_i64(i)
                    } else if let Ok(f) = t.parse::<f64>() {
                        visitor.visit_f64(f)
                    } else {
                        visitor.visit_str(t)
                    }
                }
            },
            Value::Scalar { text, .. } => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(SeqAccess(items.iter())),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(at(mark))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        let b = match self.scalar("true or false").map_err(at(mark))? {
            "true" | "True" | "TRUE" => true,
            "false" | "False" | "FALSE" => false,
            other => {
                let e: DecodeError =
                    de::Error::custom(format!("expected true or false, found `{other}`"));
                return Err(e.at(mark));
            }
        };
        visitor.visit_bool(b).map_err(at(mark))
    }

    number!(deserialize_i8, visit_i8, i8, "an integer");
    number!(deserialize_i16, visit_i16, i16, "an integer");
    number!(deserialize_i32, visit_i32, i32, "an integer");
    number!(deserialize_i64, visit_i64, i64, "an integer");
    number!(deserialize_u8, visit_u8, u8, "a non-negative integer");
    number!(deserialize_u16, visit_u16, u16, "a non-negative integer");
    number!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    number!(deserialize_u64, visit_u64, u64, "a non-negative integer");
    number!(deserialize_f32, visit_f32, f32, "a number");
    number!(deserialize_f64, visit_f64, f64, "a number");

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        let text = self.scalar("a string").map_err(at(mark))?;
        visitor.visit_str(text).map_err(at(mark))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        if self.0.is_null() {
            visitor.visit_none().map_err(at(mark))
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        visitor.visit_newtype_struct(self).map_err(at(mark))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        match &self.0.value {
            Value::Seq(items) => visitor.visit_seq(SeqAccess(items.iter())),
            _ => Err(de::Error::custom(format!(
                "expected a list, found {}; write `[a, b]` or one `- item` per line",
                self.0.kind()
            ))),
        }
        .map_err(at(mark))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        match &self.0.value {
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
            // `key:` with nothing after it reads as an empty mapping.
            _ if self.0.is_null() => visitor.visit_map(MapAccess {
                entries: [].iter(),
                value: None,
            }),
            _ => Err(de::Error::custom(format!(
                "expected a mapping of `key: value` lines, found {}",
                self.0.kind()
            ))),
        }
        .map_err(at(mark))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let mark = self.0.mark;
        let text = self.scalar("one of the listed names").map_err(at(mark))?;
        let variant: de::value::StrDeserializer<'_, DecodeError> = text.into_deserializer();
        visitor.visit_enum(variant).map_err(at(mark))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a>(std::slice::Iter<'a, Node>);

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        match self.0.next() {
            Some(node) => seed
                .deserialize(NodeDeserializer(node))
                .map(Some)
                .map_err(at(node.mark)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(NodeDeserializer(key))
                    .map(Some)
                    .map_err(at(key.mark))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <DecodeError as de::Error>::custom("a value without a key"))?;
        seed.deserialize(NodeDeserializer(node))
            .map_err(at(node.mark))
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::parse;
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        name: String,
        count: u64,
        #[serde(default)]
        ratio: Option<f64>,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Block,
        DropNewest,
    }

    fn decode(text: &str) -> Result<Example, DecodeError> {
        let node = parse(text).unwrap();
        from_node(&node)
    }

    #[test]
    fn decodes_typed_fields() {
        let e =
            decode("name: a\ncount: 1_000\nratio: 0.5\ntags: [x, y]\nmode: drop_newest\n").unwrap();
        assert_eq!(e.count, 1000);
        assert_eq!(e.ratio, Some(0.5));
        assert_eq!(e.tags, vec!["x", "y"]);
        assert_eq!(e.mode, Some(Mode::DropNewest));
    }

    #[test]
    fn unknown_field_points_at_key_and_suggests() {
        let err = decode("name: a\ncount: 1\n  \nratoi: 0.5\n").unwrap_err();
        assert_eq!(err.mark, Some(Mark { line: 4, column: 1 }));
        assert_eq!(err.message, "unknown field `ratoi`; did you mean `ratio`?");
    }

    #[test]
    fn bad_number_points_at_value() {
        let err = decode("name: a\ncount: lots\n").unwrap_err();
        assert_eq!(err.mark, Some(Mark { line: 2, column: 8 }));
        assert!(err
            .message
            .contains("expected a non-negative integer, found `lots`"));
    }

    #[test]
    fn bad_variant_suggests() {
        let err = decode("name: a\ncount: 1\nmode: drop_newst\n").unwrap_err();
        assert_eq!(err.mark, Some(Mark { line: 3, column: 7 }));
        assert!(
            err.message.contains("did you mean `drop_newest`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_field_points_at_mapping() {
        let err = decode("name: a\n").unwrap_err();
        assert_eq!(err.mark, Some(Mark { line: 1, column: 1 }));
        assert!(err.message.contains("missing field `count`"));
    }

    #[test]
    fn list_element_error_points_at_element() {
        let err = decode("name: a\ncount: 1\ntags:\n  - ok\n  - [nested]\n").unwrap_err();
        assert_eq!(err.mark, Some(Mark { line: 5, column: 5 }));
    }

    #[test]
    fn nearest_ignores_distant_names() {
        assert_eq!(nearest("zzzz", ["inputs", "type"].into_iter()), None);
        assert_eq!(
            nearest("input", ["inputs", "type"].into_iter()),
            Some("inputs")
        );
    }
}
