//! serde over the positioned tree itself: the raw structs deserialize straight from a cleaned
//! [`Node`], consuming it, so the document is never held a second time as another YAML value:
//! each part of the tree is freed as soon as it has been read.
//!
//! The tree is taken as it is: a scalar is a string, an empty value is unit (`None` for an
//! option), a list a sequence, a mapping a map. Deciding what fits is the schema walk's job,
//! done before.
//!
//! Scalars are handed over as borrowed text (the tree shares equal ones), so each string the
//! structs keep is allocated once, at its exact size.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess};
use serde::forward_to_deserialize_any;

use super::yaml::{Node, Value};

/// Why the tree did not fit the type asked for. Its message names the expected shape only,
/// never a value (a value could be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }

    fn invalid_type(_: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error(format!("invalid type, expected {exp}"))
    }

    fn invalid_value(_: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error(format!("invalid value, expected {exp}"))
    }
}

/// Deserializes `T` from `node`, consuming it.
pub fn from_node<T: DeserializeOwned>(node: Node) -> Result<T, Error> {
    T::deserialize(node)
}

impl<'de> IntoDeserializer<'de, Error> for Node {
    type Deserializer = Node;

    fn into_deserializer(self) -> Node {
        self
    }
}

impl<'de> de::Deserializer<'de> for Node {
    type Error = Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar(text) => visitor.visit_str(&text),
            Value::Seq(items) => {
                let mut access = Items(items.into_vec().into_iter());
                let value = visitor.visit_seq(&mut access)?;
                match access.0.len() {
                    0 => Ok(value),
                    n => Err(de::Error::invalid_length(n, &"fewer elements")),
                }
            }
            Value::Map(entries) => {
                let mut access = Entries {
                    entries: entries.into_vec().into_iter(),
                    value: None,
                };
                let value = visitor.visit_map(&mut access)?;
                match access.entries.len() {
                    0 => Ok(value),
                    n => Err(de::Error::invalid_length(n, &"fewer entries")),
                }
            }
        }
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// A list's items, each handed over (and freed) in turn.
struct Items(std::vec::IntoIter<Node>);

impl<'de> SeqAccess<'de> for Items {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|item| seed.deserialize(item)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// A mapping's entries; the value of the key just handed over waits in `value`.
struct Entries {
    entries: std::vec::IntoIter<(Node, Node)>,
    value: Option<Node>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::custom("a value asked for before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::config::yaml;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        #[serde(default)]
        gone: Option<String>,
        list: Vec<String>,
        map: BTreeMap<String, String>,
    }

    fn node(text: &str) -> Node {
        yaml::load(text).unwrap().unwrap()
    }

    #[test]
    fn deserializes_the_tree_as_written() {
        let doc: Doc = from_node(node("name: 015\ngone:\nlist: [a, 'b']\nmap: {k: v}\n")).unwrap();
        assert_eq!(
            doc,
            Doc {
                name: "015".into(),
                gone: None,
                list: vec!["a".into(), "b".into()],
                map: BTreeMap::from([("k".into(), "v".into())]),
            }
        );
    }

    #[test]
    fn errors_name_the_shape_not_the_value() {
        let err = from_node::<Doc>(node("name: [s3cr3t]\nlist: []\nmap: {}\n")).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = from_node::<Doc>(node("nme: x\n")).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
