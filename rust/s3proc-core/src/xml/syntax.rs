//! What XML 1.0 requires of a well-formed document that quick-xml does not
//! check: the characters allowed, names, whitespace between attributes, no
//! `<` in an attribute value and no `]]>` in text.

use super::tree::is_blank;

/// The first control character XML does not allow (below U+0020, other
/// than tab, line feed and carriage return) in `bytes`, eight bytes at a
/// time: the flags are exact, as a byte never carries into the next.
pub(super) fn first_control(bytes: &[u8]) -> Option<usize> {
    const LOW: u64 = u64::from_ne_bytes([0x7f; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero = |x: u64| !(((x & LOW) + LOW) | x) & HIGH;
    let byte = |b: u8| u64::from_ne_bytes([b; 8]);
    let bad = |w: u64| {
        let allowed = zero(w ^ byte(b'\t')) | zero(w ^ byte(b'\n')) | zero(w ^ byte(b'\r'));
        zero(w & byte(0xe0)) & !allowed
    };
    let is_bad = |c: u8| c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r');
    let at = crate::swar::find(bytes, 0, bad, is_bad);
    (at < bytes.len()).then_some(at)
}

/// The first character XML does not allow in `bytes` (UTF-8): a control
/// character (see [`first_control`]) or U+FFFE, U+FFFF; and where it is.
pub(super) fn first_forbidden(bytes: &[u8]) -> Option<(usize, char)> {
    let control = first_control(bytes).map(|at| (at, char::from(bytes[at])));
    let end = control.map_or(bytes.len(), |(at, _)| at);
    let nonchar = memchr::memmem::find_iter(&bytes[..end], b"\xef\xbf").find_map(|at| match bytes
        .get(at + 2)
    {
        Some(0xbe) => Some((at, '\u{fffe}')),
        Some(0xbf) => Some((at, '\u{ffff}')),
        _ => None,
    });
    nonchar.or(control)
}

/// Why `name` is not an XML name (`what` says whose: "element",
/// "attribute", "element prefix", …), if it is not: a name starts with a letter, `_` or `:` and goes
/// on with those, digits, `-`, `.` and the other characters XML 1.0 lists.
pub(super) fn name_error(name: &[u8], what: &str) -> Option<String> {
    let text = String::from_utf8_lossy(name);
    let mut chars = text.chars();
    let bad = match chars.next() {
        None => return Some(format!("an {what} with no name")),
        Some(c) if !is_name_start(c) => Some(c),
        Some(_) => chars.find(|&c| !is_name_char(c)),
    }?;
    let place = if text.starts_with(bad) {
        "cannot start a name"
    } else {
        "is not allowed in a name"
    };
    Some(format!(
        "{what} name `{text}` is not an XML name: {bad:?} {place}"
    ))
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Why an attribute (its name `key` and raw value `value`, both parts of
/// `tag`, the start tag's bytes) is not well-formed, if it is not: it must
/// follow whitespace, and its value holds no `<`.
pub(super) fn attribute_error(tag: &[u8], key: &[u8], value: &[u8]) -> Option<String> {
    let at = (key.as_ptr() as usize).wrapping_sub(tag.as_ptr() as usize);
    let spaced = at
        .checked_sub(1)
        .and_then(|i| tag.get(i))
        .is_none_or(|b| is_blank(&[*b]));
    // The name is text only for an error: this runs for every attribute.
    let key = || String::from_utf8_lossy(key);
    if !spaced {
        return Some(format!("no whitespace before attribute `{}`", key()));
    }
    memchr::memchr(b'<', value).map(|_| {
        format!(
            "`<` in the value of attribute `{}`, which XML does not allow (write &lt;)",
            key()
        )
    })
}

/// Where `]]>` is in `text` (raw character data), if it is: XML allows it
/// only at the end of a CDATA section.
pub(super) fn cdata_end(text: &[u8]) -> Option<usize> {
    let gt = memchr::memchr(b'>', text)?;
    let from = gt.saturating_sub(2);
    memchr::memmem::find(&text[from..], b"]]>").map(|at| from + at)
}

/// The reason of the error for [`cdata_end`].
pub(super) const CDATA_END: &str =
    "`]]>` in text, which XML does not allow outside CDATA (write ]]&gt;)";
