//! Semi-structured records: what the JSON and XML readers hand to the
//! column builder.
//!
//! CSV fields are flat text and go straight to [`crate::columns`]; JSON and
//! XML records can nest, so their readers produce [`Record`]s of [`Value`]
//! trees, and one format-neutral layer infers the (nested) Arrow schema from
//! them, widens it when a value does not fit, and builds the arrays.

use std::borrow::Cow;
use std::sync::Arc;

/// A field name. Shared: a reader hands out one allocation per distinct
/// name (the JSON parser interns them), so a repeated key costs nothing.
pub type Key = Arc<str>;

/// One value of a record, as its reader saw it. Text borrows from the
/// reader's input where it can (a JSON string without escapes, every JSON
/// number): parsing a piece allocates little beyond its containers.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// JSON `null`; an XML element that is present but empty is [`Value::Untyped`] `""`.
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// A JSON number exactly as written (`-12`, `1.5e300`, 30-digit
    /// integers): nothing is rounded before the column's type is known.
    Number(Cow<'a, str>),
    /// A JSON string: text by declaration, decoded (escapes resolved).
    Text(Cow<'a, str>),
    /// Text whose type is to be inferred as a CSV field's would be: XML
    /// attribute values and element text (XML has no types of its own).
    Untyped(Cow<'a, str>),
    /// A JSON array, or the repeated children of an XML element.
    List(Vec<Value<'a>>),
    /// A JSON object, or an XML element with attributes or children. Fields
    /// keep their order of appearance; names are unique within one object
    /// (the reader makes them so: JSON's last duplicate wins, as in most
    /// readers; XML attributes are named `@name` beside elements).
    Object(Vec<(Key, Value<'a>)>),
}

/// One record (a row of the output) and where it started in the input.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<'a> {
    /// Top-level fields, in order of appearance.
    pub fields: Vec<(Key, Value<'a>)>,
    /// 1-based line of the input where the record starts (for errors).
    pub line: u64,
}

impl Value<'_> {
    /// The value with its text copied where it was borrowed.
    pub fn into_owned(self) -> Value<'static> {
        let owned = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Number(s) => Value::Number(owned(s)),
            Value::Text(s) => Value::Text(owned(s)),
            Value::Untyped(s) => Value::Untyped(owned(s)),
            Value::List(items) => Value::List(items.into_iter().map(Value::into_owned).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, v.into_owned()))
                    .collect(),
            ),
        }
    }
}

impl Record<'_> {
    /// The record with its text copied where it was borrowed.
    pub fn into_owned(self) -> Record<'static> {
        Record {
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (k, v.into_owned()))
                .collect(),
            line: self.line,
        }
    }
}
