//! Column types: what a text value looks like, how types widen, and the
//! lossless parsers that turn text into typed values.
//!
//! The types form a lattice. A column starts at [`ColumnType::Null`] and is
//! widened by [`ColumnType::join`] with the class of every value that does
//! not fit it, until it reaches [`ColumnType::Utf8`], which holds anything.
//! Every parser here refuses a value it cannot hold exactly, so a value that
//! is accepted can always be written back as the same text meaning.

use arrow_schema::{DataType, TimeUnit};

/// Largest integer magnitude a `f64` holds exactly (2^53).
pub(crate) const F64_EXACT_INT: u64 = 1 << 53;

/// An inferred column type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// No non-null value seen yet.
    #[default]
    Null,
    /// `true` / `false`, any letter case.
    Boolean,
    /// Integers whose magnitude is at most 2^53, so they also fit a float.
    Int64,
    /// Integers that fit `i64`, some beyond 2^53 (they would lose digits as floats).
    WideInt64,
    /// Decimal or exponent numbers, `nan` and `inf`.
    Float64,
    /// `YYYY-MM-DD`.
    Date,
    /// Date and time without a zone, kept as written (microseconds).
    Timestamp,
    /// Date and time with `Z` or a numeric offset, normalised to UTC (microseconds).
    TimestampTz,
    /// Anything.
    Utf8,
}

impl ColumnType {
    /// The narrowest type that holds every value of both `self` and `other`.
    pub fn join(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Int64, WideInt64) | (WideInt64, Int64) => WideInt64,
            (Int64, Float64) | (Float64, Int64) => Float64,
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            _ => Utf8,
        }
    }

    /// The Arrow type a column of this type is written as.
    ///
    /// A column with no value at all is written as strings, all null.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int64 | ColumnType::WideInt64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            ColumnType::Null | ColumnType::Utf8 => DataType::Utf8,
        }
    }

    /// The type a column is converted with: a column that saw no value is
    /// written as strings, so a later value never forces a restart.
    pub fn finalized(self) -> ColumnType {
        match self {
            ColumnType::Null => ColumnType::Utf8,
            t => t,
        }
    }

    /// A short lower-case name, as shown by `s3proc inspect`.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Null => "null",
            ColumnType::Boolean => "boolean",
            ColumnType::Int64 | ColumnType::WideInt64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
            ColumnType::TimestampTz => "timestamp[UTC]",
            ColumnType::Utf8 => "string",
        }
    }

    /// Whether `v` (a non-null value) is held by this type as it stands.
    pub fn accepts(self, v: &[u8]) -> bool {
        match self {
            ColumnType::Null => false,
            ColumnType::Boolean => parse_bool(v).is_some(),
            ColumnType::Int64 => parse_i64(v).is_some_and(|i| i.unsigned_abs() <= F64_EXACT_INT),
            ColumnType::WideInt64 => parse_i64(v).is_some(),
            ColumnType::Float64 => parse_f64(v).is_some(),
            ColumnType::Date => parse_date(v).is_some(),
            ColumnType::Timestamp => parse_naive_timestamp(v).is_some(),
            ColumnType::TimestampTz => parse_timestamp(v).is_some_and(|(_, tz)| tz),
            ColumnType::Utf8 => true,
        }
    }

    /// Widens `self` so that it holds `v`; returns the new type.
    pub fn widen_for(self, v: &[u8]) -> ColumnType {
        if self.accepts(v) {
            self
        } else {
            self.join(classify(v))
        }
    }
}

/// The narrowest type that holds the non-null value `v`.
pub fn classify(v: &[u8]) -> ColumnType {
    let Some(&first) = v.first() else {
        return ColumnType::Utf8;
    };
    if first.is_ascii_digit() || first == b'-' || first == b'+' {
        if let Some(i) = parse_i64(v) {
            return if i.unsigned_abs() <= F64_EXACT_INT {
                ColumnType::Int64
            } else {
                ColumnType::WideInt64
            };
        }
        if is_integer_literal(v) {
            // Too large for i64: as a float it would lose digits.
            return ColumnType::Utf8;
        }
        if first.is_ascii_digit() {
            if parse_date(v).is_some() {
                return ColumnType::Date;
            }
            if let Some((_, tz)) = parse_timestamp(v) {
                return if tz {
                    ColumnType::TimestampTz
                } else {
                    ColumnType::Timestamp
                };
            }
        }
    }
    if parse_bool(v).is_some() {
        return ColumnType::Boolean;
    }
    if parse_f64(v).is_some() {
        return ColumnType::Float64;
    }
    ColumnType::Utf8
}

/// `true`/`false` in any letter case.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    if v.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if v.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

fn is_integer_literal(v: &[u8]) -> bool {
    let digits = match v.first() {
        Some(b'-' | b'+') => &v[1..],
        _ => v,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// Digits with an optional sign. A leading zero (as in `007`) is refused:
/// such codes are text, and an integer would drop the zero.
pub fn parse_i64(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut acc: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    if neg {
        if acc <= i64::MAX as u64 + 1 {
            Some((acc as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(acc).ok()
    }
}

/// A float, refusing what a float cannot hold exactly as written: integers
/// beyond 2^53, leading-zero codes, hexadecimal or padded forms, and decimals
/// that do not read back as written. Up to 15 significant digits always
/// do; 16 or 17 only when they are the shortest form of a float64 (as
/// written by Python's `repr` or any shortest-round-trip printer); more never.
pub fn parse_f64(v: &[u8]) -> Option<f64> {
    if is_integer_literal(v) {
        let i = parse_i64(v)?;
        // `-0` keeps its sign, as the float it is read as does.
        let sign = if v[0] == b'-' { -1.0 } else { 1.0 };
        return (i.unsigned_abs() <= F64_EXACT_INT).then_some(sign * (i.unsigned_abs() as f64));
    }
    let body = match v.first()? {
        b'-' | b'+' => &v[1..],
        _ => v,
    };
    // Refuse `007.5`-style codes; accept `0.5` and `.5`.
    if body.len() > 1 && body[0] == b'0' && body[1].is_ascii_digit() {
        return None;
    }
    let first = *body.first()?;
    if !(first.is_ascii_digit() || first == b'.') {
        let word = body.to_ascii_lowercase();
        return match word.as_slice() {
            b"nan" => Some(f64::NAN),
            b"inf" | b"infinity" => Some(if v[0] == b'-' {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }),
            _ => None,
        };
    }
    // Only digits, one dot and an exponent: Rust's parser also takes `inf`
    // and friends, which are handled above.
    if !body
        .iter()
        .all(|&b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    let f = std::str::from_utf8(v).ok()?.parse::<f64>().ok()?;
    if !f.is_finite() {
        return None; // `1e400`: past any float; not the infinity it would become
    }
    // Up to 15 significant digits, a normal float holds any decimal exactly: few
    // digits in all (the common case) need no check. Zeros and subnormals are
    // checked too: `1e-400` is not 0, `1.23456789012345e-320` keeps 5 digits.
    if f.is_normal() && body.iter().filter(|b| b.is_ascii_digit()).count() <= 15 {
        return Some(f);
    }
    let digits = significant_digits(body);
    let exact = if f == 0.0 {
        digits.is_empty()
    } else {
        (f.is_normal() && digits.len() <= 15)
            || digits == significant_digits(format!("{:e}", f.abs()).as_bytes())
    };
    exact.then_some(f)
}

/// The significant digits of a decimal's mantissa: no sign, dot, exponent,
/// leading or trailing zeros (`-0.01500e3` → `15`).
fn significant_digits(v: &[u8]) -> Vec<u8> {
    let mantissa = v.split(|&b| b == b'e' || b == b'E').next().unwrap_or(v);
    let digits: Vec<u8> = mantissa
        .iter()
        .copied()
        .filter(u8::is_ascii_digit)
        .collect();
    let start = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let end = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(start, |i| i + 1);
    digits[start..end].to_vec()
}

fn two_digits(v: &[u8], at: usize) -> Option<u32> {
    let a = v.get(at)?.wrapping_sub(b'0');
    let b = v.get(at + 1)?.wrapping_sub(b'0');
    (a <= 9 && b <= 9).then(|| u32::from(a) * 10 + u32::from(b))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `YYYY-MM-DD` prefix of `v` as days since the epoch.
fn date_prefix(v: &[u8]) -> Option<i32> {
    if v.len() < 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let year = two_digits(v, 0)? * 100 + two_digits(v, 2)?;
    let month = two_digits(v, 5)?;
    let day = two_digits(v, 8)?;
    let year = year as i32;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub fn parse_date(v: &[u8]) -> Option<i32> {
    if v.len() != 10 {
        return None;
    }
    date_prefix(v)
}

/// A date-time without zone, or a date (read as its midnight), as
/// microseconds since the epoch: what a [`ColumnType::Timestamp`] column holds.
pub fn parse_naive_timestamp(v: &[u8]) -> Option<i64> {
    match parse_timestamp(v) {
        Some((micros, false)) => Some(micros),
        Some((_, true)) => None,
        None => parse_date(v).map(|days| i64::from(days) * 86_400_000_000),
    }
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][Z|±HH[:MM]]` as microseconds since
/// the epoch (in UTC when a zone is given) and whether a zone was given.
///
/// A fraction finer than a microsecond is accepted only when the extra digits
/// are zeros, so no value is rounded.
pub fn parse_timestamp(v: &[u8]) -> Option<(i64, bool)> {
    let days = date_prefix(v)?;
    if v.len() < 16 || !matches!(v[10], b'T' | b' ') || v[13] != b':' {
        return None;
    }
    let hour = two_digits(v, 11)?;
    let minute = two_digits(v, 14)?;
    let mut i = 16;
    let mut second = 0;
    let mut micros: u32 = 0;
    if v.get(i) == Some(&b':') {
        second = two_digits(v, i + 1)?;
        i += 3;
        if v.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < v.len() && v[i].is_ascii_digit() {
                let d = u32::from(v[i] - b'0');
                let place = i - start;
                if place < 6 {
                    micros += d * 10u32.pow(5 - place as u32);
                } else if d != 0 {
                    return None;
                }
                i += 1;
            }
            if i == start || i - start > 9 {
                return None;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let rest = &v[i..];
    let offset_seconds: Option<i64> = match rest {
        [] => None,
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (h, m) = match tail.len() {
                2 => (two_digits(tail, 0)?, 0),
                4 => (two_digits(tail, 0)?, two_digits(tail, 2)?),
                5 if tail[2] == b':' => (two_digits(tail, 0)?, two_digits(tail, 3)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let s = i64::from(h * 3600 + m * 60);
            Some(if *sign == b'-' { -s } else { s })
        }
        _ => return None,
    };
    let secs = i64::from(days) * 86_400 + i64::from(hour * 3600 + minute * 60 + second)
        - offset_seconds.unwrap_or(0);
    Some((
        secs * 1_000_000 + i64::from(micros),
        offset_seconds.is_some(),
    ))
}

#[cfg(test)]
mod tests {
    use super::ColumnType::*;
    use super::*;

    #[test]
    fn floats_are_accepted_only_when_they_read_back_as_written() {
        for ok in [
            "0.1",
            "123456789.012345",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "-2.5e-10",
            "1.50",
            "0.0",
            "-0e5",
            "5e-324",
            "2.2250738585072014e-308",
            "0.00000000000000000000001",
            "inf",
        ] {
            assert!(parse_f64(ok.as_bytes()).is_some(), "{ok}");
        }
        for lost in [
            "0.1234567890123456789",
            "3.14159265358979323846",
            "0.30000000000000001",
            "1e400",
            "-1e400",
            "1e-400",
            "1.23456789012345e-320",
        ] {
            assert!(parse_f64(lost.as_bytes()).is_none(), "{lost}");
            assert_eq!(classify(lost.as_bytes()), Utf8, "{lost}");
        }
        assert_eq!(significant_digits(b"-0.01500e3"), b"15");
        for zero in ["-0", "-0.0", "-0e5", "-00"] {
            let z = parse_f64(zero.as_bytes());
            assert!(
                zero == "-00" || z.is_some_and(|z| z == 0.0 && z.is_sign_negative()),
                "{zero}"
            );
        }
        assert!(parse_f64(b"0").is_some_and(f64::is_sign_positive));
        assert_eq!(parse_f64(b"-7"), Some(-7.0));
    }

    #[test]
    fn classifies_values() {
        assert_eq!(classify(b"42"), Int64);
        assert_eq!(classify(b"-9007199254740993"), WideInt64);
        assert_eq!(classify(b"12345678901234567890"), Utf8);
        assert_eq!(classify(b"007"), Utf8);
        assert_eq!(classify(b"2.5"), Float64);
        assert_eq!(classify(b"-1e5"), Float64);
        assert_eq!(classify(b"NaN"), Float64);
        assert_eq!(classify(b"N/A"), Utf8);
        assert_eq!(classify(b"TRUE"), Boolean);
        assert_eq!(classify(b"2024-02-29"), Date);
        assert_eq!(classify(b"2023-02-29"), Utf8);
        assert_eq!(classify(b"2024-10-28 14:19:27"), Timestamp);
        assert_eq!(classify(b"2024-10-28T14:19:27.123456Z"), TimestampTz);
        assert_eq!(classify(b"2024-10-28T14:19:27+02:00"), TimestampTz);
        assert_eq!(classify(b"2024-10-28T14:19:27.1234567Z"), Utf8);
        assert_eq!(classify(b"2024-10-28T14:19:27.123456000Z"), TimestampTz);
        assert_eq!(classify(b"0x1F"), Utf8);
        assert_eq!(classify(b"1_000"), Utf8);
    }

    #[test]
    fn widening_never_loses_a_value() {
        assert_eq!(Int64.join(Float64), Float64);
        assert_eq!(WideInt64.join(Float64), Utf8);
        assert_eq!(Int64.widen_for(b"9007199254740993"), WideInt64);
        assert_eq!(Float64.widen_for(b"9007199254740993"), Utf8);
        assert_eq!(Date.join(Timestamp), Timestamp);
        // What a type accepts is exactly what joining with it leaves unchanged.
        for v in [
            &b"2024-01-01"[..],
            b"2024-01-01 10:00",
            b"5",
            b"2.5",
            b"9007199254740993",
            b"x",
        ] {
            for t in [
                Null,
                Boolean,
                Int64,
                WideInt64,
                Float64,
                Date,
                Timestamp,
                TimestampTz,
                Utf8,
            ] {
                assert_eq!(
                    t.accepts(v),
                    t.join(classify(v)) == t,
                    "{t:?} {:?}",
                    std::str::from_utf8(v)
                );
            }
        }
        assert_eq!(Timestamp.join(TimestampTz), Utf8);
        assert_eq!(Int64.widen_for(b"N/A"), Utf8);
        assert_eq!(Null.widen_for(b"1"), Int64);
    }

    #[test]
    fn parses_timestamps_exactly() {
        assert_eq!(parse_timestamp(b"1970-01-01T00:00:00Z"), Some((0, true)));
        assert_eq!(
            parse_timestamp(b"1970-01-01 01:00:00+01:00"),
            Some((0, true))
        );
        assert_eq!(
            parse_timestamp(b"1969-12-31 23:59:59.5"),
            Some((-500_000, false))
        );
        assert_eq!(
            parse_timestamp(b"2000-03-01T00:00"),
            Some((951_868_800_000_000, false))
        );
        assert_eq!(parse_date(b"2000-03-01"), Some(11_017));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
    }
}
