//! A serde `Deserializer` over the position-carrying tree, so type errors in the merged
//! config name the key path and the source, line and column of the offending value.
//!
//! Scalars are lenient on purpose: any scalar can be read as a string (`permissions: 0644`
//! stays `"0644"`, a label value `true` stays `"true"`), and bools accept
//! true/false/yes/no/on/off as YAML 1.1 (and so k3OS) did.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use crate::node::{path_string, Mark, Node, PathSeg, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    pub path: Vec<PathSeg>,
    pub mark: Option<Mark>,
    pub message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", path_string(&self.path), self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: Vec::new(),
            mark: None,
            message: msg.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing `{field}`"))
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        Self::custom(format!("unknown key `{field}`"))
    }
}

/// Deserializes a `T` from a (normalised, merged) tree.
pub fn from_node<'de, T: serde::Deserialize<'de>>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: Vec::new(),
    })
}

pub struct NodeDe<'a> {
    node: &'a Node,
    path: Vec<PathSeg>,
}

impl NodeDe<'_> {
    fn err(&self, message: impl Into<String>) -> DeError {
        DeError {
            path: self.path.clone(),
            mark: Some(self.node.mark.clone()),
            message: message.into(),
        }
    }

    /// Gives an error raised deeper (or by serde's derived code) this node's position if it
    /// has none yet.
    fn locate(&self, mut e: DeError) -> DeError {
        if e.mark.is_none() {
            e.mark = Some(self.node.mark.clone());
            e.path = self.path.clone();
        }
        e
    }

    fn kind(&self) -> &'static str {
        match &self.node.value {
            Value::Null => "nothing",
            Value::Scalar(_) => "a plain value",
            Value::Seq { .. } => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    fn text(&self, expected: &str) -> Result<&str, DeError> {
        match &self.node.value {
            Value::Scalar(s) => Ok(&s.text),
            _ => Err(self.err(format!("expected {expected}, found {}", self.kind()))),
        }
    }

    fn map<'de, V: Visitor<'de>>(self, v: V, entries: bool) -> Result<V::Value, DeError> {
        let empty = indexmap::IndexMap::new();
        let m = match &self.node.value {
            Value::Map(m) => m,
            // A key written with nothing after it: an empty mapping.
            Value::Null => &empty,
            _ => return Err(self.err(format!("expected a mapping, found {}", self.kind()))),
        };
        v.visit_map(Map {
            iter: m.iter(),
            value: None,
            path: &self.path,
            entries,
        })
        .map_err(|e| self.locate(e))
    }

    fn number<T: std::str::FromStr>(&self, expected: &str) -> Result<T, DeError> {
        let t = self.text(expected)?;
        t.trim()
            .parse()
            .map_err(|_| self.err(format!("expected {expected}, found `{t}`")))
    }
}

macro_rules! number {
    ($method:ident, $visit:ident, $ty:ty, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let n: $ty = self.number($what)?;
            v.$visit(n).map_err(|e| self.locate(e))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => v.visit_unit().map_err(|e| self.locate(e)),
            Value::Scalar(s) => v.visit_str(&s.text).map_err(|e| self.locate(e)),
            Value::Seq { .. } => self.deserialize_seq(v),
            Value::Map(_) => self.deserialize_map(v),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let t = self.text("true or false")?;
        let b = match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => true,
            "false" | "no" | "off" => false,
            _ => return Err(self.err(format!("expected true or false, found `{t}`"))),
        };
        v.visit_bool(b).map_err(|e| self.locate(e))
    }

    number!(deserialize_i8, visit_i8, i8, "a number");
    number!(deserialize_i16, visit_i16, i16, "a number");
    number!(deserialize_i32, visit_i32, i32, "a number");
    number!(deserialize_i64, visit_i64, i64, "a number");
    number!(deserialize_u8, visit_u8, u8, "a number from 0 to 255");
    number!(deserialize_u16, visit_u16, u16, "a number from 0 to 65535");
    number!(deserialize_u32, visit_u32, u32, "a whole number");
    number!(deserialize_u64, visit_u64, u64, "a whole number");
    number!(deserialize_f32, visit_f32, f32, "a number");
    number!(deserialize_f64, visit_f64, f64, "a number");

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let t = self.text("a plain value (text)")?;
        v.visit_str(t).map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            v.visit_none()
        } else {
            let loc = NodeDe {
                node: self.node,
                path: self.path.clone(),
            };
            v.visit_some(self).map_err(|e| loc.locate(e))
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq { items, .. } => {
                let r = v.visit_seq(Seq {
                    items: items.iter().enumerate(),
                    path: &self.path,
                });
                r.map_err(|e| self.locate(e))
            }
            // A key written with nothing after it: an empty list.
            Value::Null => v.visit_seq(Seq {
                items: [].iter().enumerate(),
                path: &self.path,
            }),
            _ => Err(self.err(format!("expected a list, found {}", self.kind()))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.map(v, true)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.map(v, false)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let t = self.text(&format!("one of {}", variants.join(", ")))?;
        let d: de::value::StrDeserializer<'_, DeError> = t.into_deserializer();
        v.visit_enum(d).map_err(|e| {
            self.locate(DeError {
                message: format!("expected one of {}, found `{t}`", variants.join(", ")),
                ..e
            })
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct Seq<'a, I> {
    items: I,
    path: &'a [PathSeg],
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> SeqAccess<'de> for Seq<'a, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let mut path = self.path.to_vec();
                path.push(PathSeg::Index(i));
                let d = NodeDe { node, path };
                let loc = NodeDe {
                    node,
                    path: d.path.clone(),
                };
                seed.deserialize(d).map(Some).map_err(|e| loc.locate(e))
            }
        }
    }
}

struct Map<'a> {
    iter: indexmap::map::Iter<'a, String, crate::node::Entry>,
    value: Option<(&'a String, &'a Node)>,
    path: &'a [PathSeg],
    /// A user map (labels...) rather than a struct: keys are shown as `[key]`.
    entries: bool,
}

impl Map<'_> {
    fn seg(&self, k: &str) -> PathSeg {
        if self.entries {
            PathSeg::Entry(k.to_string())
        } else {
            PathSeg::Key(k.to_string())
        }
    }
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            None => Ok(None),
            Some((k, e)) => {
                self.value = Some((k, &e.node));
                let kd: de::value::StrDeserializer<'_, DeError> = k.as_str().into_deserializer();
                let mut path = self.path.to_vec();
                path.push(self.seg(k));
                seed.deserialize(kd).map(Some).map_err(|mut err| {
                    if err.mark.is_none() {
                        err.mark = Some(e.key_mark.clone());
                        err.path = path;
                    }
                    err
                })
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (k, node) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without a key"))?;
        let mut path = self.path.to_vec();
        path.push(self.seg(k));
        let loc = NodeDe {
            node,
            path: path.clone(),
        };
        seed.deserialize(NodeDe { node, path })
            .map_err(|e| loc.locate(e))
    }
}
