//! The schema of semi-structured records, inferred and widened value by
//! value, and the Arrow arrays built from them.
//!
//! A [`Shape`] is a lattice like [`ColumnType`]: it only ever widens.
//! Objects become structs (fields matched by name, new names appended, so a
//! key seen late is a nullable column whose earlier rows are null), arrays
//! become lists, scalars take a [`ColumnType`]. Values that mix nested and
//! scalar kinds (or objects and arrays) in one place widen it to
//! [`Shape::Json`]: the values are written as JSON text.
//!
//! Scalars follow the CSV rules with JSON's declarations respected: a JSON
//! number is an integer (`Int64`) or a float (`Float64`); an integer beyond
//! `i64`, or a number a float would turn into infinity, keeps its exact text
//! (the column becomes a string). A JSON string is a string, except that
//! ISO dates and timestamps are detected as for CSV. Untyped text (XML) is
//! inferred exactly like a CSV field.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, ListArray, StringArray, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields};

use crate::columns::{build, has_wide_int};
use crate::types::{classify, parse_f64, ColumnType};
use crate::value::{Key, Record, Value};

/// The inferred type of a value's place in the records.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Shape {
    /// Nothing but nulls seen yet.
    #[default]
    Null,
    /// A scalar column.
    Scalar(ColumnType),
    /// A list of the inner shape.
    List(Box<Shape>),
    /// A struct; fields in order of first appearance.
    Struct(Vec<(String, Shape)>),
    /// Mixed kinds: JSON text.
    Json,
}

fn number_type(t: ColumnType, s: &str) -> ColumnType {
    let finite = |s: &str| parse_f64(s.as_bytes()).is_some_and(f64::is_finite);
    if t.accepts(s.as_bytes()) && (t != ColumnType::Float64 || finite(s)) {
        return t;
    }
    let class = match classify(s.as_bytes()) {
        ColumnType::Float64 if !finite(s) => ColumnType::Utf8,
        c => c,
    };
    t.join(class)
}

fn text_type(t: ColumnType, s: &str) -> ColumnType {
    use ColumnType::*;
    if matches!(t, Date | Timestamp | TimestampTz | Utf8) && t.accepts(s.as_bytes()) {
        return t;
    }
    let class = match classify(s.as_bytes()) {
        c @ (Date | Timestamp | TimestampTz) => c,
        _ => Utf8,
    };
    t.join(class)
}

fn scalar_type(t: ColumnType, v: &Value) -> ColumnType {
    match v {
        Value::Bool(_) => t.join(ColumnType::Boolean),
        Value::Number(s) => number_type(t, s),
        Value::Text(s) => text_type(t, s),
        Value::Untyped(s) => t.widen_for(s.as_bytes()),
        Value::Null | Value::List(_) | Value::Object(_) => t,
    }
}

/// Field `name` of an object, looked for first at position `hint` (fields
/// usually come in the same order in every record).
#[inline]
pub fn field<'a, 'v>(
    fields: &'a [(Key, Value<'v>)],
    name: &str,
    hint: usize,
) -> Option<&'a Value<'v>> {
    entry(fields, name, hint).map(|(_, v)| v)
}

/// As [`field`], with the key found.
#[inline]
fn entry<'a, 'v>(
    fields: &'a [(Key, Value<'v>)],
    name: &str,
    hint: usize,
) -> Option<(&'a Key, &'a Value<'v>)> {
    match fields.get(hint) {
        Some((k, v)) if **k == *name => Some((k, v)),
        _ => fields
            .iter()
            .find(|(k, _)| **k == *name)
            .map(|(k, v)| (k, v)),
    }
}

/// Fields a struct looks through one by one; past this, by a hash map (an
/// object of many keys would take quadratic time).
const FEW_FIELDS: usize = 64;

/// The position of each of `fields` by name, for a struct of many fields.
#[derive(Default)]
pub(crate) struct FieldIndex(Option<HashMap<String, usize>>);

impl FieldIndex {
    /// The position of `name` in `fields` (which only grow while this is used).
    fn find(&mut self, fields: &[(String, Shape)], name: &str) -> Option<usize> {
        if fields.len() <= FEW_FIELDS {
            return fields.iter().position(|(k, _)| k == name);
        }
        let index = self.0.get_or_insert_with(|| {
            (fields.iter().enumerate())
                .map(|(i, (k, _))| (k.clone(), i))
                .collect()
        });
        index.get(name).copied()
    }

    /// As [`FieldIndex::find`], looking first at `hint` (keys usually come
    /// in the same order in every object).
    pub(crate) fn locate(
        &mut self,
        fields: &[(String, Shape)],
        hint: usize,
        name: &str,
    ) -> Option<usize> {
        match fields.get(hint) {
            Some((k, _)) if k == name => Some(hint),
            _ => self.find(fields, name),
        }
    }

    /// Appends a field named `name`; returns its position.
    fn push(&mut self, fields: &mut Vec<(String, Shape)>, name: &str, shape: Shape) -> usize {
        fields.push((name.to_owned(), shape));
        if let Some(index) = self.0.as_mut() {
            index.insert(name.to_owned(), fields.len() - 1);
        }
        fields.len() - 1
    }
}

/// Widens `fields` (a struct's, found by `index`) to hold the object `kv`.
fn widen_fields(fields: &mut Vec<(String, Shape)>, kv: &[(Key, Value)], index: &mut FieldIndex) {
    for (j, (name, v)) in kv.iter().enumerate() {
        let at = match index.locate(fields, j, name) {
            Some(p) => p,
            None => index.push(fields, name, Shape::Null),
        };
        fields[at].1.widen(v);
    }
}

impl Shape {
    /// The root shape: a struct with no field yet.
    pub fn root() -> Self {
        Shape::Struct(Vec::new())
    }

    /// Widens the shape so that it holds `v`.
    pub fn widen(&mut self, v: &Value) {
        match (&mut *self, v) {
            (_, Value::Null) | (Shape::Json, _) => {}
            (Shape::Null, _) => {
                *self = match v {
                    Value::List(_) => Shape::List(Box::default()),
                    Value::Object(_) => Shape::root(),
                    _ => Shape::Scalar(ColumnType::Null),
                };
                self.widen(v);
            }
            (
                Shape::Scalar(t),
                Value::Bool(_) | Value::Number(_) | Value::Text(_) | Value::Untyped(_),
            ) => {
                *t = scalar_type(*t, v);
            }
            (Shape::List(inner), Value::List(items)) => inner.widen_items(items),
            (Shape::Struct(fields), Value::Object(kv)) => {
                widen_fields(fields, kv, &mut FieldIndex::default());
            }
            _ => *self = Shape::Json,
        }
    }

    /// Widens the shape to hold each of `items`; objects share one index
    /// of the struct's fields, so that each costs its own keys.
    fn widen_items(&mut self, items: &[Value]) {
        let mut index = FieldIndex::default();
        for item in items {
            match (&mut *self, item) {
                (Shape::Struct(fields), Value::Object(kv)) => widen_fields(fields, kv, &mut index),
                _ => self.widen(item),
            }
        }
    }

    /// Widens the root shape to hold `records`.
    pub fn widen_records(&mut self, records: &[Record]) {
        if let Shape::Struct(fields) = self {
            let mut index = FieldIndex::default();
            for r in records {
                widen_fields(fields, &r.fields, &mut index);
            }
        }
    }

    /// Marks each integer place of this root shape where `columns`, built in
    /// it, hold a value beyond 2^53: a float seen later must then widen the
    /// place to strings, not to floats that would round what was written.
    pub fn note_wide_ints(&mut self, columns: &[ArrayRef]) {
        if let Shape::Struct(fields) = self {
            for ((_, s), c) in fields.iter_mut().zip(columns) {
                s.note_wide(c.as_ref());
            }
        }
    }

    fn note_wide(&mut self, array: &dyn Array) {
        match self {
            Shape::Scalar(t @ ColumnType::Int64) if has_wide_int(array) => {
                *t = ColumnType::WideInt64;
            }
            Shape::List(inner) => {
                if let Some(list) = array.as_any().downcast_ref::<ListArray>() {
                    inner.note_wide(list.values().as_ref());
                }
            }
            Shape::Struct(fields) => {
                if let Some(s) = array.as_any().downcast_ref::<StructArray>() {
                    for ((_, f), c) in fields.iter_mut().zip(s.columns()) {
                        f.note_wide(c.as_ref());
                    }
                }
            }
            _ => {}
        }
    }

    /// The narrowest shape holding the values of both.
    pub fn join(&mut self, other: &Shape) {
        match (&mut *self, other) {
            (_, Shape::Null) | (Shape::Json, _) => {}
            (Shape::Null, o) => *self = o.clone(),
            (_, Shape::Json) => *self = Shape::Json,
            (Shape::Scalar(a), Shape::Scalar(b)) => *a = a.join(*b),
            (Shape::List(a), Shape::List(b)) => a.join(b),
            (Shape::Struct(a), Shape::Struct(b)) => {
                let mut index = FieldIndex::default();
                for (j, (name, s)) in b.iter().enumerate() {
                    match index.locate(a, j, name) {
                        Some(at) => a[at].1.join(s),
                        None => {
                            index.push(a, name, s.clone());
                        }
                    }
                }
            }
            _ => *self = Shape::Json,
        }
    }

    /// The shape a conversion writes: places that saw no value are strings
    /// (so a later value never forces a restart), an object that never had
    /// a field is JSON text (Parquet has no empty group).
    pub fn finalized(&self) -> Shape {
        match self {
            Shape::Null => Shape::Scalar(ColumnType::Utf8),
            Shape::Scalar(t) => Shape::Scalar(t.finalized()),
            Shape::List(inner) => Shape::List(Box::new(inner.finalized())),
            Shape::Struct(f) if f.is_empty() => Shape::Json,
            Shape::Struct(f) => {
                Shape::Struct(f.iter().map(|(k, s)| (k.clone(), s.finalized())).collect())
            }
            Shape::Json => Shape::Json,
        }
    }

    /// Whether two (finalized) shapes are written the same way.
    pub fn same_layout(&self, other: &Shape) -> bool {
        match (self, other) {
            (Shape::Scalar(a), Shape::Scalar(b)) => {
                a.finalized().arrow_type() == b.finalized().arrow_type()
            }
            (Shape::Json, Shape::Json) => true,
            (Shape::List(a), Shape::List(b)) => a.same_layout(b),
            (Shape::Struct(a), Shape::Struct(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, sa), (kb, sb))| ka == kb && sa.same_layout(sb))
            }
            _ => false,
        }
    }

    /// The Arrow type the (finalized) shape is written as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            Shape::Null | Shape::Json => DataType::Utf8,
            Shape::Scalar(t) => t.finalized().arrow_type(),
            Shape::List(inner) => {
                DataType::List(Arc::new(Field::new("item", inner.arrow_type(), true)))
            }
            Shape::Struct(f) => DataType::Struct(struct_fields(f)),
        }
    }

    /// A type name as `inspect` shows it: `int64`, `list<string>`,
    /// `struct<a: int64, b: json>`.
    pub fn type_name(&self) -> String {
        match self {
            Shape::Null => "null".into(),
            Shape::Scalar(t) => t.name().into(),
            Shape::Json => "json".into(),
            Shape::List(inner) => format!("list<{}>", inner.type_name()),
            Shape::Struct(f) => format!(
                "struct<{}>",
                f.iter()
                    .map(|(k, s)| format!("{k}: {}", s.type_name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Values a converted piece holds per record, missing ones included:
    /// each leaf column holds one per row of its level, a record or an item
    /// of the lists above it (`items`: the items per record at each list's
    /// place, see [`count_list_items`]). A sparse record of a few keys among
    /// thousands of columns costs them all.
    pub fn values_per_record(&self, items: &HashMap<String, f64>) -> f64 {
        let mut total = 0.0;
        self.add_values(&mut String::new(), 1.0, items, &mut total);
        total
    }

    fn add_values(
        &self,
        path: &mut String,
        rows: f64,
        items: &HashMap<String, f64>,
        total: &mut f64,
    ) {
        match self {
            Shape::Struct(f) if !f.is_empty() => {
                for (k, s) in f {
                    let at = path.len();
                    path.push('/');
                    path.push_str(k);
                    s.add_values(path, rows, items, total);
                    path.truncate(at);
                }
            }
            Shape::List(inner) => {
                let n = items.get(path.as_str()).copied().unwrap_or(0.0);
                let at = path.len();
                path.push_str("[]");
                inner.add_values(path, n, items, total);
                path.truncate(at);
            }
            _ => *total += rows,
        }
    }

    /// The Parquet leaf columns of the (finalized) shape.
    pub fn columns(&self) -> usize {
        match self {
            Shape::List(inner) => inner.columns(),
            Shape::Struct(f) if !f.is_empty() => f.iter().map(|(_, s)| s.columns()).sum(),
            _ => 1,
        }
    }

    /// The top-level fields of a root shape.
    pub fn fields(&self) -> &[(String, Shape)] {
        match self {
            Shape::Struct(f) => f,
            _ => &[],
        }
    }
}

fn struct_fields(f: &[(String, Shape)]) -> Fields {
    f.iter()
        .map(|(k, s)| Field::new(k, s.arrow_type(), true))
        .collect()
}

/// The Arrow fields of the columns of a (finalized) root shape.
pub fn arrow_fields(root: &Shape) -> Vec<Field> {
    struct_fields(root.fields())
        .iter()
        .map(|f| f.as_ref().clone())
        .collect()
}

/// The text of a scalar value (`None` for null, lists and objects).
pub fn scalar_bytes<'a>(v: Option<&'a Value<'_>>) -> Option<&'a [u8]> {
    match v? {
        Value::Null | Value::List(_) | Value::Object(_) => None,
        Value::Bool(true) => Some(b"true"),
        Value::Bool(false) => Some(b"false"),
        Value::Number(s) | Value::Text(s) | Value::Untyped(s) => Some(s.as_bytes()),
    }
}

fn is_null(v: Option<&Value<'_>>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// Whether a column of type `t` holds `v`'s kind, as widening would keep
/// it; the value itself is checked when it is parsed.
pub(crate) fn holds(t: ColumnType, v: &Value<'_>) -> bool {
    use ColumnType::*;
    match v {
        Value::Null | Value::Untyped(_) => true,
        Value::Bool(_) => matches!(t, Boolean | Utf8),
        // Only an exponent or 300 digits can overflow a float to infinity.
        Value::Number(s) => match t {
            Int64 | WideInt64 | Utf8 => true,
            Float64 => !(s.len() > 300 || s.contains(['e', 'E'])) || number_type(t, s) == t,
            _ => false,
        },
        Value::Text(_) => matches!(t, Date | Timestamp | TimestampTz | Utf8),
        Value::List(_) | Value::Object(_) => false,
    }
}

/// The value of each of `fields` in each of `objects` (`None` for a
/// missing key or object), column by column; `None` when an object has a
/// key that is not one of `fields` (the shape must widen first). Each
/// object costs its own keys, not the struct's width: a sparse record of a
/// few keys among thousands of fields is cheap.
pub fn transpose<'a, 'v>(
    fields: &[(String, Shape)],
    objects: &[Option<&'a [(Key, Value<'v>)]>],
) -> Option<Vec<Vec<Option<&'a Value<'v>>>>> {
    let mut columns = vec![vec![None; objects.len()]; fields.len()];
    let mut index = FieldIndex::default();
    // The key last seen at each place in an object and its field: readers
    // intern keys, so the same key in the next object is most often the
    // same pointer, found with no text comparison.
    let mut last: Vec<Option<(&'a Key, usize)>> = Vec::new();
    for (i, kv) in objects.iter().enumerate() {
        for (j, (k, v)) in kv.iter().copied().flatten().enumerate() {
            let at = match last.get(j) {
                Some(Some((seen, at))) if Arc::ptr_eq(seen, k) => *at,
                _ => {
                    let at = index.locate(fields, j, k)?;
                    if last.len() <= j {
                        last.resize(j + 1, None);
                    }
                    last[j] = Some((k, at));
                    at
                }
            };
            columns[at][i] = Some(v);
        }
    }
    Some(columns)
}

/// Builds the array of a (finalized) `shape` from one value per row;
/// `None` when a value does not fit (the shape must widen for it first): a
/// scalar of another kind or that does not parse, a key the struct lacks.
pub fn build_array(shape: &Shape, values: &[Option<&Value<'_>>]) -> Option<ArrayRef> {
    let n = values.len();
    match shape {
        Shape::Scalar(t) => {
            if !values.iter().flatten().all(|v| holds(*t, v)) {
                return None;
            }
            build(*t, n, |i| scalar_bytes(values[i]), true).array
        }
        Shape::Null | Shape::Json => {
            let mut text = String::new();
            Some(Arc::new(
                values
                    .iter()
                    .map(|v| match v {
                        None | Some(Value::Null) => None,
                        Some(v) => {
                            text.clear();
                            write_json(v, &mut text);
                            Some(text.clone())
                        }
                    })
                    .collect::<StringArray>(),
            ))
        }
        Shape::List(inner) => {
            let mut offsets: Vec<i32> = Vec::with_capacity(n + 1);
            let mut nulls = NullBufferBuilder::new(n);
            let mut items: Vec<Option<&Value>> = Vec::new();
            offsets.push(0);
            for v in values {
                match v {
                    Some(Value::List(list)) => {
                        items.extend(list.iter().map(Some));
                        nulls.append_non_null();
                    }
                    v if is_null(*v) => nulls.append_null(),
                    _ => return None,
                }
                offsets.push(i32::try_from(items.len()).ok()?);
            }
            let child = build_array(inner, &items)?;
            let field = Arc::new(Field::new("item", inner.arrow_type(), true));
            ListArray::try_new(
                field,
                OffsetBuffer::new(offsets.into()),
                child,
                nulls.finish(),
            )
            .ok()
            .map(|a| Arc::new(a) as ArrayRef)
        }
        Shape::Struct(fields) => {
            let mut nulls = NullBufferBuilder::new(n);
            let mut objects = Vec::with_capacity(n);
            for v in values {
                match v {
                    Some(Value::Object(kv)) => {
                        nulls.append_non_null();
                        objects.push(Some(kv.as_slice()));
                    }
                    v if is_null(*v) => {
                        nulls.append_null();
                        objects.push(None);
                    }
                    _ => return None,
                }
            }
            let children = transpose(fields, &objects)?
                .iter()
                .zip(fields)
                .map(|(column, (_, s))| build_array(s, column))
                .collect::<Option<Vec<_>>>()?;
            StructArray::try_new(struct_fields(fields), children, nulls.finish())
                .ok()
                .map(|a| Arc::new(a) as ArrayRef)
        }
    }
}

/// Adds the items of each list in a record's fields `kv` to `items`, by
/// place: the field names from the root, `[]` for a list's items.
pub fn count_list_items(kv: &[(Key, Value<'_>)], items: &mut HashMap<String, usize>) {
    count_fields(kv, &mut String::new(), items);
}

fn count_fields(kv: &[(Key, Value<'_>)], path: &mut String, items: &mut HashMap<String, usize>) {
    for (k, v) in kv {
        if matches!(v, Value::Object(_) | Value::List(_)) {
            let at = path.len();
            path.push('/');
            path.push_str(k);
            count_value(v, path, items);
            path.truncate(at);
        }
    }
}

fn count_value(v: &Value<'_>, path: &mut String, items: &mut HashMap<String, usize>) {
    match v {
        Value::Object(kv) => count_fields(kv, path, items),
        Value::List(list) => {
            match items.get_mut(path.as_str()) {
                Some(n) => *n += list.len(),
                None => {
                    items.insert(path.clone(), list.len());
                }
            }
            let at = path.len();
            path.push_str("[]");
            for item in list {
                count_value(item, path, items);
            }
            path.truncate(at);
        }
        _ => {}
    }
}

/// Appends `v` as compact JSON text (numbers exactly as written).
pub fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(s) => out.push_str(s),
        Value::Text(s) | Value::Untyped(s) => write_json_string(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(kv) => {
            out.push('{');
            for (i, (k, item)) in kv.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn num(s: &str) -> Value<'_> {
        Value::Number(s.into())
    }

    fn obj<'a>(kv: &[(&str, Value<'a>)]) -> Value<'a> {
        Value::Object(kv.iter().map(|(k, v)| ((*k).into(), v.clone())).collect())
    }

    #[test]
    fn many_fields_are_matched_by_name_in_order_of_first_appearance() {
        let names: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
        fn object(
            names: &[String],
            order: &mut dyn Iterator<Item = usize>,
            v: &str,
        ) -> Value<'static> {
            let kv: Vec<(Key, Value)> = order
                .map(|i| (Key::from(names[i].as_str()), num(v).into_owned()))
                .collect();
            Value::Object(kv)
        }
        let mut s = Shape::Null;
        s.widen(&object(&names, &mut (0..200), "1"));
        s.widen(&object(&names, &mut (100..300).rev(), "2.5"));
        let fields = s.fields();
        assert_eq!(fields.len(), 300);
        assert!(fields.iter().zip(&names[..200]).all(|((k, _), n)| k == n));
        assert_eq!(fields[200].0, "k299");
        assert_eq!(fields[0].1, Shape::Scalar(ColumnType::Int64));
        assert_eq!(fields[150].1, Shape::Scalar(ColumnType::Float64));
        let mut joined = Shape::Null;
        joined.widen(&object(&names, &mut (0..100).rev(), "1"));
        joined.join(&s);
        assert_eq!(joined.fields().len(), 300);
        assert_eq!(joined.fields()[0].0, "k99");
    }

    #[test]
    fn widens_by_name_and_kind() {
        let mut s = Shape::Null;
        s.widen(&obj(&[("a", num("1")), ("b", Value::Text("x".into()))]));
        s.widen(&obj(&[
            ("b", Value::Text("2024-01-01".into())),
            ("a", num("2.5")),
        ]));
        s.widen(&obj(&[("c", Value::List(vec![num("1"), Value::Null]))]));
        assert_eq!(
            s.type_name(),
            "struct<a: float64, b: string, c: list<int64>>"
        );
        s.widen(&obj(&[("c", num("3"))]));
        s.widen(&obj(&[("a", num("123456789012345678901234567890"))]));
        assert_eq!(s.type_name(), "struct<a: string, b: string, c: json>");
        let mut d = Shape::Null;
        d.widen(&Value::Text("2024-01-01".into()));
        assert_eq!(d, Shape::Scalar(ColumnType::Date));
        d.widen(&Value::Text("2024-01-01 10:00".into()));
        assert_eq!(d, Shape::Scalar(ColumnType::Timestamp));
        let mut n = Shape::Null;
        n.widen(&num("1e400"));
        assert_eq!(n, Shape::Scalar(ColumnType::Utf8));
        let mut i = Shape::Scalar(ColumnType::Int64);
        i.widen(&Value::Text("5".into()));
        assert_eq!(i, Shape::Scalar(ColumnType::Utf8));
    }

    #[test]
    fn join_matches_widening() {
        let vals = [
            obj(&[("a", num("1"))]),
            obj(&[("b", Value::List(vec![obj(&[("x", Value::Bool(true))])]))]),
            obj(&[("a", num("2.5")), ("b", Value::Null)]),
        ];
        let mut all = Shape::Null;
        vals.iter().for_each(|v| all.widen(v));
        let mut joined = Shape::Null;
        for v in &vals {
            let mut one = Shape::Null;
            one.widen(v);
            joined.join(&one);
        }
        assert_eq!(all, joined);
    }

    #[test]
    fn values_per_record_count_each_list_level() {
        let items = |n: usize| Value::List(vec![obj(&[("x", num("1")), ("y", num("2"))]); n]);
        let records = [
            obj(&[
                ("a", num("1")),
                ("l", items(3)),
                ("t", Value::List(vec![num("1")])),
            ]),
            obj(&[("b", num("2")), ("l", items(1))]),
        ];
        let mut shape = Shape::Null;
        let mut counts = HashMap::new();
        for r in &records {
            shape.widen(r);
            if let Value::Object(kv) = r {
                count_list_items(kv, &mut counts);
            }
        }
        let per_record: HashMap<String, f64> = counts
            .into_iter()
            .map(|(k, n)| (k, n as f64 / 2.0))
            .collect();
        // a and b: a value each per record; x and y: one per item (2 a record); t: 0.5.
        assert_eq!(
            shape.finalized().values_per_record(&per_record),
            2.0 + 4.0 + 0.5
        );
    }

    #[test]
    fn builds_nested_arrays() {
        let vals = [
            obj(&[
                ("a", num("1")),
                ("l", Value::List(vec![num("1"), num("2")])),
            ]),
            Value::Null,
            obj(&[("l", Value::Null), ("a", num("-3"))]),
        ];
        let mut s = Shape::Null;
        vals.iter().for_each(|v| s.widen(v));
        let s = s.finalized();
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        let a = build_array(&s, &refs).expect("fits");
        assert_eq!(a.len(), 3);
        assert_eq!(a.null_count(), 1);
        assert_eq!(a.data_type(), &s.arrow_type());
        let mut text = String::new();
        write_json(&vals[0], &mut text);
        assert_eq!(text, r#"{"a":1,"l":[1,2]}"#);
    }
}
