//! JSON: newline-delimited, concatenated, one array of objects or one
//! object, streamed piece by piece into [`crate::value::Record`]s.

pub mod direct;
pub mod parse;
pub mod split;

use crate::error::{Error, Result};
use crate::value::Record;
use split::{Layout, TextPiece};

/// The records of one piece cut by [`split::JsonSplitter`] for `layout`.
///
/// # Errors
/// [`Error::Parse`] with the line and column of the first syntax error.
pub fn parse_piece<'a>(
    piece: &'a TextPiece,
    layout: &Layout,
    name: &str,
) -> Result<Vec<Record<'a>>> {
    let parsed = match layout {
        Layout::Lines => parse::values(&piece.data, piece.first_line, true),
        Layout::Values => parse::values(&piece.data, piece.first_line, false),
        Layout::Array { .. } => {
            parse::elements(&piece.data, piece.first_line, piece.after_comma, piece.last)
        }
    };
    parsed.map_err(|e| Error::parse(name, e.line, e.reason()))
}
