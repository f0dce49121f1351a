//! Building typed Arrow columns from text values, and widening the type
//! when a value does not fit.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow_array::builder::BooleanBuilder;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{ArrayRef, PrimitiveArray, StringArray};
use arrow_buffer::{Buffer, NullBufferBuilder, OffsetBuffer};

use crate::types::{
    parse_bool, parse_date, parse_f64, parse_i64, parse_naive_timestamp, parse_timestamp,
    ColumnType,
};

/// One output column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Name in the output schema.
    pub name: String,
    /// Inferred type (before [`ColumnType::finalized`]).
    pub ty: ColumnType,
    /// Whether the Parquet writer should try dictionary encoding.
    pub dictionary: bool,
}

/// Deterministic unique names: a blank name becomes `column_N` (1-based
/// position), a repeated one gets `_2`, `_3`… until it is unique.
pub fn unique_names(names: &[Option<String>]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    let wanted: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(j, n)| match n {
            Some(n) if !n.trim().is_empty() => n.clone(),
            _ => format!("column_{}", j + 1),
        })
        .collect();
    wanted
        .into_iter()
        .map(|base| {
            let mut name = base.clone();
            let mut k = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}_{k}");
                k += 1;
            }
            name
        })
        .collect()
}

/// Whether a column's values repeat enough for dictionary encoding to pay
/// (near-unique ones only cost the writer a dictionary it then drops),
/// judged from a sample. Distinct values are counted by a hash with fixed
/// seeds (the decision, and so the output bytes, never vary between runs),
/// and only until there are too many of them to matter.
#[derive(Debug)]
pub struct Repeats {
    /// The 64-bit hashes of the values seen (hashed once: the set's own
    /// hasher passes them through).
    distinct: HashSet<u64, BuildHasherDefault<Prehashed>>,
    hasher: ahash::RandomState,
    /// Most values the column can have in the sample (its rows).
    most: usize,
    values: usize,
}

/// The hasher of a set of hashes: a `u64` key is its own hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Repeats {
    /// Counts for a column of at most `most` values in the sample.
    pub fn new(most: usize) -> Self {
        // Room for a low-cardinality column from the start (a wide table
        // must not reserve much per column).
        let room = (most / 2 + 1).min(1 << 10);
        Self {
            distinct: HashSet::with_capacity_and_hasher(room, BuildHasherDefault::default()),
            hasher: ahash::RandomState::with_seeds(0x5e, 0x3a, 0x9c, 0x71),
            most,
            values: 0,
        }
    }

    /// Counts one non-null value.
    pub fn add(&mut self, v: &[u8]) {
        // Past half the rows, the column is near-unique whatever comes next:
        // more values would not change `wants_dictionary`.
        if self.distinct.len() * 2 <= self.most {
            self.distinct.insert(self.hasher.hash_one(v));
        }
        self.values += 1;
    }

    /// Whether a column of type `ty` with these values should be
    /// dictionary-encoded (booleans never: they are bit-packed).
    pub fn wants_dictionary(&self, ty: ColumnType) -> bool {
        match ty {
            ColumnType::Boolean => false,
            _ => self.values < 1000 || self.distinct.len() * 2 <= self.values,
        }
    }
}

/// What processing one column of one piece gave.
#[derive(Debug)]
pub struct Built {
    /// The column's type after seeing this piece's values.
    pub ty: ColumnType,
    /// The values, when they were wanted and all fit the physical type.
    pub array: Option<ArrayRef>,
}

/// Builds a column of `rows` values of type `ty`, where `value(i)` is the
/// text of row `i` (`None` for null). When a value does not fit, no array
/// is built and the returned type is widened to hold every value.
pub fn build<'a>(
    ty: ColumnType,
    rows: usize,
    value: impl Fn(usize) -> Option<&'a [u8]>,
    want_array: bool,
) -> Built {
    if want_array {
        let built = match ty {
            ColumnType::Boolean => booleans(rows, &value).map(|a| (a, ty)),
            ColumnType::Int64 | ColumnType::WideInt64 => ints(rows, &value, ty),
            ColumnType::Float64 => {
                primitives::<Float64Type>(rows, &value, parse_f64).map(|a| (a, ty))
            }
            ColumnType::Date => primitives::<Date32Type>(rows, &value, parse_date).map(|a| (a, ty)),
            ColumnType::Timestamp => {
                primitives::<TimestampMicrosecondType>(rows, &value, parse_naive_timestamp)
                    .map(|a| (a, ty))
            }
            ColumnType::TimestampTz => timestamps_utc(rows, &value).map(|a| (a, ty)),
            ColumnType::Null | ColumnType::Utf8 => Ok((strings(rows, &value), ty)),
        };
        if let Ok((array, ty)) = built {
            return Built {
                ty,
                array: Some(array),
            };
        }
    }
    Built {
        ty: widen(ty, rows, &value),
        array: None,
    }
}

/// The narrowest type at or above `ty` that holds all values.
fn widen<'a>(
    mut ty: ColumnType,
    rows: usize,
    value: &impl Fn(usize) -> Option<&'a [u8]>,
) -> ColumnType {
    for i in 0..rows {
        if ty == ColumnType::Utf8 {
            break;
        }
        if let Some(v) = value(i) {
            ty = ty.widen_for(v);
        }
    }
    ty
}

fn primitives<'a, T: ArrowPrimitiveType>(
    rows: usize,
    value: &impl Fn(usize) -> Option<&'a [u8]>,
    parse: impl Fn(&[u8]) -> Option<T::Native>,
) -> Result<ArrayRef, usize> {
    let mut values = Vec::with_capacity(rows);
    let mut nulls = NullBufferBuilder::new(rows);
    for i in 0..rows {
        match value(i) {
            None => {
                values.push(T::Native::default());
                nulls.append_null();
            }
            Some(v) => {
                values.push(parse(v).ok_or(i)?);
                nulls.append_non_null();
            }
        }
    }
    Ok(Arc::new(PrimitiveArray::<T>::new(
        values.into(),
        nulls.finish(),
    )))
}

/// Integers; reports [`ColumnType::WideInt64`] once a value passes 2^53.
fn ints<'a>(
    rows: usize,
    value: &impl Fn(usize) -> Option<&'a [u8]>,
    ty: ColumnType,
) -> Result<(ArrayRef, ColumnType), usize> {
    let array = primitives::<Int64Type>(rows, value, parse_i64)?;
    let wide = ty == ColumnType::WideInt64
        || array
            .as_any()
            .downcast_ref::<PrimitiveArray<Int64Type>>()
            .is_some_and(|a| a.iter().flatten().any(|v| v.unsigned_abs() > 1 << 53));
    Ok((
        array,
        if wide {
            ColumnType::WideInt64
        } else {
            ColumnType::Int64
        },
    ))
}

fn timestamps_utc<'a>(
    rows: usize,
    value: &impl Fn(usize) -> Option<&'a [u8]>,
) -> Result<ArrayRef, usize> {
    let array = primitives::<TimestampMicrosecondType>(rows, value, |v| {
        parse_timestamp(v).filter(|t| t.1).map(|t| t.0)
    })?;
    let array = array
        .as_any()
        .downcast_ref::<PrimitiveArray<TimestampMicrosecondType>>()
        .map(|a| a.clone().with_timezone("UTC"))
        .ok_or(0usize)?;
    Ok(Arc::new(array))
}

fn booleans<'a>(
    rows: usize,
    value: &impl Fn(usize) -> Option<&'a [u8]>,
) -> Result<ArrayRef, usize> {
    let mut b = BooleanBuilder::with_capacity(rows);
    for i in 0..rows {
        match value(i) {
            None => b.append_null(),
            Some(v) => b.append_value(parse_bool(v).ok_or(i)?),
        }
    }
    Ok(Arc::new(b.finish()))
}

/// Strings. The bytes were checked to be UTF-8 when the piece was read,
/// and every field boundary is an ASCII delimiter, so each value is valid.
fn strings<'a>(rows: usize, value: &impl Fn(usize) -> Option<&'a [u8]>) -> ArrayRef {
    let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
    let total: usize = (0..rows).map(|i| value(i).map_or(0, <[u8]>::len)).sum();
    let mut data: Vec<u8> = Vec::with_capacity(total);
    let mut nulls = NullBufferBuilder::new(rows);
    offsets.push(0);
    for i in 0..rows {
        match value(i) {
            None => nulls.append_null(),
            Some(v) => {
                data.extend_from_slice(v);
                nulls.append_non_null();
            }
        }
        offsets.push(data.len() as i32);
    }
    let offsets = OffsetBuffer::new(offsets.into());
    match StringArray::try_new(offsets, Buffer::from_vec(data), nulls.finish()) {
        Ok(a) => Arc::new(a),
        // Unreachable for checked input; still keep every value, never panic.
        Err(_) => Arc::new(
            (0..rows)
                .map(|i| value(i).map(|v| String::from_utf8_lossy(v).into_owned()))
                .collect::<StringArray>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn names_are_unique_and_stable() {
        let got = unique_names(&[
            Some("a".into()),
            None,
            Some("a".into()),
            Some("column_2".into()),
            Some(" ".into()),
        ]);
        assert_eq!(got, ["a", "column_2", "a_2", "column_2_2", "column_5"]);
    }

    #[test]
    fn drift_widens_instead_of_failing() {
        let vals: Vec<Option<&[u8]>> = vec![Some(b"1"), None, Some(b"2.5")];
        let b = build(ColumnType::Int64, 3, |i| vals[i], true);
        assert_eq!(b.ty, ColumnType::Float64);
        assert!(b.array.is_none());
        let b = build(ColumnType::Float64, 3, |i| vals[i], true);
        let a = b.array.expect("fits");
        assert_eq!(a.null_count(), 1);
    }
}
