//! Building one record's [`Value`] tree from its elements.

use std::borrow::Cow;
use std::collections::HashMap;
use std::mem;
use std::sync::Arc;

use super::syntax::name_error;
use crate::value::{Key, Value};

/// Past this many fields an object indexes its names (a record with
/// thousands of distinct children must not cost a quadratic search).
const INDEX_AT: usize = 24;

/// The name under which an element's text is kept beside its attributes
/// and children.
pub(super) const TEXT_KEY: &str = "#text";

/// One [`Key`] per distinct name of a piece: equal names are one pointer,
/// so [`Fields`] compares pointers, and a repeated name costs no
/// allocation. Every key a [`Fields`] sees must come from one table.
pub(super) struct Names<'p> {
    /// Keys by their text (`name`, `@name`, `#text`).
    keys: HashMap<Cow<'p, str>, Key, ahash::RandomState>,
    text: Key,
    scratch: String,
}

impl<'p> Names<'p> {
    pub(super) fn new() -> Self {
        let text: Key = TEXT_KEY.into();
        let mut keys = HashMap::default();
        keys.insert(Cow::Borrowed(TEXT_KEY), Key::clone(&text));
        Self {
            keys,
            text,
            scratch: String::new(),
        }
    }

    /// The key of the element named `name` (a local name); why it is not
    /// an XML name, the first time it is seen, if it is not.
    pub(super) fn element(&mut self, name: Cow<'p, str>) -> Result<Key, String> {
        // `@name` and `#text` are keys too, but no element's name.
        match self.keys.get(name.as_ref()) {
            Some(key) if !name.starts_with(['@', '#']) => return Ok(Key::clone(key)),
            _ => {}
        }
        if let Some(why) = name_error(name.as_bytes(), "element") {
            return Err(why);
        }
        let key: Key = name.as_ref().into();
        self.keys.insert(name, Key::clone(&key));
        Ok(key)
    }

    /// The key of the attribute named `name` (`@name`); why it is not an
    /// XML name, the first time it is seen, if it is not.
    pub(super) fn attribute(&mut self, name: &str) -> Result<Key, String> {
        self.scratch.clear();
        self.scratch.push('@');
        self.scratch.push_str(name);
        if let Some(key) = self.keys.get(self.scratch.as_str()) {
            return Ok(Key::clone(key));
        }
        if let Some(why) = name_error(name.as_bytes(), "attribute") {
            return Err(why);
        }
        let key: Key = self.scratch.as_str().into();
        self.keys
            .insert(Cow::Owned(self.scratch.clone()), Key::clone(&key));
        Ok(key)
    }
}

/// The fields of an element being read: names are unique, a repeated name
/// turns its value into a [`Value::List`].
#[derive(Default)]
pub(super) struct Fields<'p> {
    list: Vec<(Key, Value<'p>)>,
    index: Option<HashMap<Key, usize>>,
}

impl<'p> Fields<'p> {
    /// Adds `key` (from the piece's [`Names`]): a new field, or one more
    /// item of an existing one.
    pub(super) fn add(&mut self, key: Key, value: Value<'p>) {
        let found = match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.list.iter().position(|(k, _)| Arc::ptr_eq(k, &key)),
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
    pub(super) fn take(&mut self) -> Vec<(Key, Value<'p>)> {
        self.index = None;
        mem::take(&mut self.list)
    }
}

/// The text of an element so far: borrowed from the piece while it is one
/// run that needs no decoding (most values), owned once runs are joined or
/// decoded.
#[derive(Default)]
pub(super) struct Text<'p> {
    run: &'p str,
    owned: String,
    is_owned: bool,
}

impl<'p> Text<'p> {
    /// Appends `text` as written (line ends normalised).
    pub(super) fn push(&mut self, text: Cow<'p, str>) {
        if let (false, "", Cow::Borrowed(s)) = (self.is_owned, self.run, &text) {
            if memchr::memchr(b'\r', s.as_bytes()).is_none() {
                self.run = s;
                return;
            }
        }
        push_normalized(self.owned(), &text);
    }

    /// Appends decoded text (a reference's).
    pub(super) fn push_decoded(&mut self, text: &str) {
        self.owned().push_str(text);
    }

    fn owned(&mut self) -> &mut String {
        if !self.is_owned {
            self.owned.clear();
            self.owned.push_str(self.run);
            self.is_owned = true;
        }
        &mut self.owned
    }

    /// The text, leaving this empty.
    fn take(&mut self) -> Cow<'p, str> {
        let run = mem::take(&mut self.run);
        if mem::take(&mut self.is_owned) {
            Cow::Owned(mem::take(&mut self.owned))
        } else {
            Cow::Borrowed(run)
        }
    }
}

/// An element open inside a record.
#[derive(Default)]
pub(super) struct Frame<'p> {
    /// The key in its parent (`None` for the record element).
    pub(super) key: Option<Key>,
    /// Child elements so far.
    pub(super) children: usize,
    /// The keys of the children of the last element read in this frame,
    /// in order (what the next one's children are most likely named).
    pub(super) seen: Vec<Key>,
    /// Attributes and children so far.
    pub(super) fields: Fields<'p>,
    /// Text and CDATA so far, entities resolved.
    pub(super) text: Text<'p>,
}

impl<'p> Frame<'p> {
    /// The element's value, leaving the frame ready for reuse: a leaf is its
    /// text ([`Value::Untyped`], `""` when empty); an element with
    /// attributes or children is an object, its text under [`TEXT_KEY`]
    /// unless it is only whitespace (indentation).
    pub(super) fn finish(&mut self, names: &Names<'p>) -> Value<'p> {
        if self.fields.is_empty() {
            Value::Untyped(self.text.take())
        } else {
            self.text_field(names);
            Value::Object(self.fields.take())
        }
    }

    /// The fields of a record element: as [`Frame::finish`], with a leaf's
    /// text as a [`TEXT_KEY`] field.
    pub(super) fn finish_record(&mut self, names: &Names<'p>) -> Vec<(Key, Value<'p>)> {
        self.text_field(names);
        self.fields.take()
    }

    /// Forgets what the frame holds.
    pub(super) fn clear(&mut self) {
        self.fields.take();
        self.text.take();
    }

    fn text_field(&mut self, names: &Names<'p>) {
        let text = self.text.take();
        if !is_blank(text.as_bytes()) {
            self.fields
                .add(Key::clone(&names.text), Value::Untyped(text));
        }
    }
}

/// Whether `bytes` is only XML whitespace.
pub(super) fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Appends `text` with its line ends normalised (`\r\n` and `\r` to `\n`).
pub(super) fn push_normalized(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = memchr::memchr(b'\r', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        out.push('\n');
        rest = &rest[at + 1..];
        rest = rest.strip_prefix('\n').unwrap_or(rest);
    }
    out.push_str(rest);
}
