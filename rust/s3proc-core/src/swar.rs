//! Scanning text eight bytes at a time in a `u64` (SIMD within a register),
//! for the parsers' inner loops: most fields and strings are short, and
//! finding where one ends is their hottest work.

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGH: u64 = ONES << 7;

/// Flags (high bit of the byte) the bytes of `w` equal to `b`. The lowest
/// flag is exact; flags above it may be wrong.
#[inline]
pub fn equal(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Flags the bytes of `w` below `b` (`b` at most 0x80), as [`equal`].
#[inline]
pub fn below(w: u64, b: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(b)) & !w & HIGH
}

/// The position of the first byte at or after `from` that `flags` (a word
/// at a time) and `stops` (a byte at a time, for the tail) agree on, or
/// the end of `input`.
#[inline]
pub fn find(
    input: &[u8],
    mut from: usize,
    flags: impl Fn(u64) -> u64,
    stops: impl Fn(u8) -> bool,
) -> usize {
    while let Some(chunk) = input.get(from..from + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let hits = flags(u64::from_le_bytes(bytes));
        if hits != 0 {
            return from + (hits.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    from + input[from.min(input.len())..]
        .iter()
        .position(|&c| stops(c))
        .unwrap_or(input.len().saturating_sub(from))
}
