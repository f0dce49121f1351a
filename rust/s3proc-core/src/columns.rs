//! Building typed Arrow columns from text values, and widening the type
//! when a value does not fit.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::builder::BooleanBuilder;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, Int64Array, PrimitiveArray, StringArray};
use arrow_buffer::{Buffer, NullBufferBuilder, OffsetBuffer};

use crate::types::{
    parse_bool, parse_date, parse_f64, parse_i64, parse_naive_timestamp, parse_timestamp,
    ColumnType, F64_EXACT_INT,
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
/// judged from a sample.
///
/// Distinct values are estimated by linear counting: each value sets the
/// bit its hash picks in a fixed bitmap, and `n` distinct values leave
/// about `m·e^(−n/m)` of its `m` bits clear. Far cheaper than a set of the
/// values (no growth, no probing: one hash and one bit), and within a
/// fraction of a percent up to the sample's size. The hash has fixed seeds,
/// so the decision, and the output bytes, never vary between runs.
#[derive(Debug)]
pub struct Repeats {
    bits: Vec<u64>,
    hasher: ahash::RandomState,
    /// Most values the column can have in the sample (its rows).
    most: usize,
    values: usize,
    /// More distinct values than [`NEAR_UNIQUE`] of `most`: near-unique
    /// whatever comes next, so nothing more is hashed.
    unique: bool,
}

/// The share of distinct values from which a sample is near-unique. Below
/// it a dictionary pays at the scale of a row group (a sample of 20,000
/// with half its values distinct holds a few tens of thousands of distinct
/// values in a row group of hundreds of thousands); a column whose
/// dictionary outgrows its page there falls back by itself.
const NEAR_UNIQUE: f64 = 0.9;

/// Bits of the sketch: its estimate stays within about 1% up to tens of
/// thousands of distinct values (a sample has at most 20,000 by default).
const SKETCH_BITS: usize = 1 << 15;

impl Repeats {
    /// Counts for a column of at most `most` values in the sample.
    pub fn new(most: usize) -> Self {
        Self {
            bits: vec![0; SKETCH_BITS / 64],
            hasher: ahash::RandomState::with_seeds(0x5e, 0x3a, 0x9c, 0x71),
            most,
            values: 0,
            unique: false,
        }
    }

    /// Counts one non-null value.
    pub fn add(&mut self, v: &[u8]) {
        self.values += 1;
        if self.unique {
            return;
        }
        let h = self.hasher.hash_one(v) as usize;
        let words = self.bits.len();
        self.bits[(h >> 6) % words] |= 1 << (h & 63);
        if self.values.is_multiple_of(1024) && self.distinct() > NEAR_UNIQUE * self.most as f64 {
            self.unique = true;
        }
    }

    /// The estimated number of distinct values.
    fn distinct(&self) -> f64 {
        let set: u32 = self.bits.iter().map(|w| w.count_ones()).sum();
        let clear = SKETCH_BITS - set as usize;
        if clear == 0 {
            return f64::INFINITY;
        }
        let m = SKETCH_BITS as f64;
        m * (m / clear as f64).ln()
    }

    /// Whether a column of type `ty` with these values should be
    /// dictionary-encoded (booleans never: they are bit-packed).
    pub fn wants_dictionary(&self, ty: ColumnType) -> bool {
        match ty {
            ColumnType::Boolean => false,
            _ => {
                self.values < 1000
                    || (!self.unique && self.distinct() <= NEAR_UNIQUE * self.values as f64)
            }
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
    let wide = ty == ColumnType::WideInt64 || has_wide_int(&array);
    Ok((
        array,
        if wide {
            ColumnType::WideInt64
        } else {
            ColumnType::Int64
        },
    ))
}

/// Whether an integer array holds a value beyond 2^53, which a float
/// would round.
pub fn has_wide_int(array: &dyn Array) -> bool {
    let wide = |v: &i64| v.unsigned_abs() > F64_EXACT_INT;
    array
        .as_any()
        .downcast_ref::<Int64Array>()
        .is_some_and(|a| match a.nulls() {
            // With no null, the values are a plain slice (a vectorised scan).
            None => a.values().iter().any(wide),
            // Only the values there (a sparse column is mostly nulls).
            Some(n) => n.valid_indices().any(|i| wide(&a.values()[i])),
        })
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
    fn repeats_estimate_distinct_values_closely() {
        for n in [1_000usize, 5_000, 10_000, 20_000] {
            let mut r = Repeats::new(usize::MAX);
            (0..40_000).for_each(|i| r.add(format!("v{}", i % n).as_bytes()));
            let err = (r.distinct() - n as f64).abs() / n as f64;
            assert!(err < 0.02, "{n} distinct estimated as {}", r.distinct());
        }
    }

    #[test]
    fn dictionary_for_repeated_values_only() {
        let decide = |distinct: usize, rows: usize| {
            let mut r = Repeats::new(20_000);
            (0..rows).for_each(|i| r.add((i % distinct).to_string().as_bytes()));
            r.wants_dictionary(ColumnType::Int64)
        };
        assert!(decide(100, 20_000));
        assert!(decide(8_000, 20_000));
        assert!(decide(14_000, 20_000));
        assert!(!decide(19_000, 20_000));
        assert!(!decide(20_000, 20_000));
        assert!(decide(900, 900)); // too few values to judge: the writer decides
        let mut flags = Repeats::new(20_000);
        (0..5000).for_each(|i| flags.add(if i % 2 == 0 { b"true" } else { b"false" }));
        assert!(!flags.wants_dictionary(ColumnType::Boolean));
    }

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
