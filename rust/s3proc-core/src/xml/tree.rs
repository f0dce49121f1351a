//! Building one record's [`Value`] tree from its elements.

use std::collections::HashMap;
use std::mem;

use crate::value::{Key, Value};

/// Past this many fields an object indexes its names (a record with
/// thousands of distinct children must not cost a quadratic search).
const INDEX_AT: usize = 24;

/// The name under which an element's text is kept beside its attributes
/// and children.
pub(super) const TEXT_KEY: &str = "#text";

/// The fields of an element being read: names are unique, a repeated name
/// turns its value into a [`Value::List`].
#[derive(Default)]
pub(super) struct Fields {
    list: Vec<(Key, Value<'static>)>,
    index: Option<HashMap<Key, usize>>,
}

impl Fields {
    /// Adds `key`: a new field, or one more item of an existing one.
    pub(super) fn add(&mut self, key: Key, value: Value<'static>) {
        let found = match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.list.iter().position(|(k, _)| *k == key),
        };
        match found {
            Some(i) => match &mut self.list[i].1 {
                // Element and attribute values are never lists themselves,
                // so a list here is always an earlier repetition.
                Value::List(items) => items.push(value),
                slot => {
                    let first = mem::replace(slot, Value::Null);
                    *slot = Value::List(vec![first, value]);
                }
            },
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(key.clone(), self.list.len());
                } else if self.list.len() >= INDEX_AT {
                    let mut index: HashMap<Key, usize> = self
                        .list
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect();
                    index.insert(key.clone(), self.list.len());
                    self.index = Some(index);
                }
                self.list.push((key, value));
            }
        }
    }

    /// Room for `n` fields.
    pub(super) fn reserve(&mut self, n: usize) {
        self.list.reserve(n);
    }

    /// Whether no attribute or child was added.
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The fields, leaving this empty.
    pub(super) fn take(&mut self) -> Vec<(Key, Value<'static>)> {
        self.index = None;
        mem::take(&mut self.list)
    }
}

/// An element open inside a record.
#[derive(Default)]
pub(super) struct Frame {
    /// Local name (the key in its parent).
    pub(super) name: String,
    /// Qualified name, to check the end tag.
    pub(super) qname: Vec<u8>,
    /// Attributes and children so far.
    pub(super) fields: Fields,
    /// Text and CDATA so far, entities resolved.
    pub(super) text: String,
}

impl Frame {
    /// The element's value, leaving the frame ready for reuse: a leaf is its
    /// text ([`Value::Untyped`], `""` when empty); an element with
    /// attributes or children is an object, its text under [`TEXT_KEY`]
    /// unless it is only whitespace (indentation).
    pub(super) fn finish(&mut self) -> Value<'static> {
        let value = if self.fields.is_empty() {
            Value::Untyped(String::from(self.text.as_str()).into())
        } else {
            self.text_field();
            Value::Object(self.fields.take())
        };
        self.text.clear();
        value
    }

    /// The fields of a record element: as [`Frame::finish`], with a leaf's
    /// text as a [`TEXT_KEY`] field.
    pub(super) fn finish_record(&mut self) -> Vec<(Key, Value<'static>)> {
        self.text_field();
        self.text.clear();
        self.fields.take()
    }

    fn text_field(&mut self) {
        if !is_blank(self.text.as_bytes()) {
            self.fields
                .add(TEXT_KEY.into(), Value::Untyped(self.text.clone().into()));
        }
    }
}

/// Whether `bytes` is only XML whitespace.
pub(super) fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}
