//! Sources that can be read more than once, and the text decoding layer
//! that turns any supported encoding into UTF-8 bytes.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use encoding_rs::{
    Decoder, DecoderResult, Encoding as RsEncoding, UTF_16BE, UTF_16LE, WINDOWS_1252,
};

use crate::error::{Error, Malformed, Result};

/// A byte source the converter can open again from the start.
///
/// Conversion restarts from the beginning when a late value widens a column,
/// so a source must be re-readable: a local file, or an archive entry that
/// can be opened again.
pub trait Source: Send + Sync {
    /// A name for messages and metadata (usually the path).
    fn name(&self) -> &str;
    /// Opens a new reader positioned at the start of the data.
    ///
    /// # Errors
    /// Any I/O error of opening the source.
    fn open(&self) -> io::Result<Box<dyn Read + Send>>;
    /// The name of the data as stored, when [`Source::name`] names what is
    /// inside it: `x.csv.gz` for a decompressed source named `x.csv`.
    fn original_name(&self) -> &str {
        self.name()
    }
    /// Key-value pairs this source adds to the Parquet file's metadata
    /// (for example `s3proc.compression`).
    fn metadata(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Opens a reader that can also seek, when the source allows it (a zip
    /// is read through its central directory then); `None` otherwise.
    ///
    /// # Errors
    /// Any I/O error of opening the source.
    fn open_seekable(&self) -> io::Result<Option<Box<dyn ReadSeek>>> {
        Ok(None)
    }
}

/// The key-value metadata of a converted file: version, source (its name as
/// stored: `x.csv.gz`), format, the format's own pairs, encoding, rows, then
/// what the source adds (`s3proc.compression`).
pub(crate) fn file_metadata(
    source: &dyn Source,
    format: &str,
    own: Vec<(String, String)>,
    encoding: String,
    rows: u64,
) -> Vec<(String, String)> {
    let mut out = vec![
        ("s3proc.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("s3proc.source".into(), source.original_name().into()),
        ("s3proc.format".into(), format.into()),
    ];
    out.extend(own);
    out.push(("s3proc.encoding".into(), encoding));
    out.push(("s3proc.rows".into(), rows.to_string()));
    out.extend(source.metadata());
    out
}

/// A reader that can seek (see [`Source::open_seekable`]).
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A file on the local filesystem, read directly (never through Python).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    name: String,
}

impl FileSource {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path.display().to_string();
        Self { path, name }
    }

    /// The same source shown under `name` in messages and metadata.
    pub fn named(mut self, name: String) -> Self {
        self.name = name;
        self
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(open_regular(&self.path)?))
    }

    fn open_seekable(&self) -> io::Result<Option<Box<dyn ReadSeek>>> {
        Ok(Some(Box::new(open_regular(&self.path)?)))
    }
}

/// `path` opened, when it is a regular file. A source is opened several
/// times (the sniffer's passes, then the conversion): each open of a pipe or
/// a device would go on where the last one stopped, losing the head of the
/// data, and the open of a FIFO would wait for another writer.
fn open_regular(path: &Path) -> io::Result<File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file: a pipe, FIFO or device can be read only once, \
                 so pass it as an open binary stream",
                path.display()
            ),
        ));
    }
    File::open(path)
}

/// An in-memory source (tests, small payloads).
#[derive(Debug, Clone)]
pub struct BytesSource {
    /// The data.
    pub data: std::sync::Arc<[u8]>,
    /// The name used in messages.
    pub name: String,
}

impl Source for BytesSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.data.clone())))
    }

    fn open_seekable(&self) -> io::Result<Option<Box<dyn ReadSeek>>> {
        Ok(Some(Box::new(io::Cursor::new(self.data.clone()))))
    }
}

/// The text encoding of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8; a stray invalid byte is read as Windows-1252 so nothing is lost.
    Utf8,
    /// UTF-8 with a byte order mark, which is dropped.
    Utf8Bom,
    /// Windows-1252 (a superset of printable Latin-1).
    Windows1252,
    /// UTF-16, little-endian, with a byte order mark.
    Utf16Le,
    /// UTF-16, big-endian, with a byte order mark.
    Utf16Be,
}

impl TextEncoding {
    /// The name reported in metadata and by `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "utf-8",
            TextEncoding::Utf8Bom => "utf-8-sig",
            TextEncoding::Windows1252 => "windows-1252",
            TextEncoding::Utf16Le => "utf-16le",
            TextEncoding::Utf16Be => "utf-16be",
        }
    }

    /// Parses a user-given encoding name.
    ///
    /// # Errors
    /// [`Error::Option`] for a name that is not supported.
    pub fn from_name(name: &str) -> Result<Self> {
        let n = name.to_ascii_lowercase().replace('_', "-");
        Ok(match n.as_str() {
            "utf-8" | "utf8" => TextEncoding::Utf8,
            "utf-8-sig" => TextEncoding::Utf8Bom,
            "windows-1252" | "cp1252" | "latin-1" | "latin1" | "iso-8859-1" => {
                TextEncoding::Windows1252
            }
            "utf-16le" | "utf-16-le" => TextEncoding::Utf16Le,
            "utf-16be" | "utf-16-be" => TextEncoding::Utf16Be,
            _ => {
                return Err(Error::Option {
                    option: "encoding",
                    reason: format!(
                        "unsupported encoding {name:?} (use utf-8, windows-1252, latin-1, utf-16le or utf-16be)"
                    ),
                })
            }
        })
    }

    /// The encoding a byte order mark at the start of `head` announces.
    pub fn from_bom(head: &[u8]) -> Option<Self> {
        match head {
            [0xEF, 0xBB, 0xBF, ..] => Some(TextEncoding::Utf8Bom),
            [0xFF, 0xFE, ..] => Some(TextEncoding::Utf16Le),
            [0xFE, 0xFF, ..] => Some(TextEncoding::Utf16Be),
            _ => None,
        }
    }

    /// The length of the byte order mark skipped when it is there (UTF-8's
    /// too: a file given as `utf-8` may still start with one).
    fn bom_len(self) -> usize {
        match self {
            TextEncoding::Utf8 | TextEncoding::Utf8Bom => 3,
            TextEncoding::Utf16Le | TextEncoding::Utf16Be => 2,
            _ => 0,
        }
    }

    fn transcoder(self) -> Option<&'static RsEncoding> {
        match self {
            TextEncoding::Windows1252 => Some(WINDOWS_1252),
            TextEncoding::Utf16Le => Some(UTF_16LE),
            TextEncoding::Utf16Be => Some(UTF_16BE),
            _ => None,
        }
    }
}

/// Opens `source` as UTF-8 text: the byte order mark is skipped and other
/// encodings are transcoded while streaming.
///
/// # Errors
/// I/O errors of opening or of skipping the byte order mark.
pub fn open_text(source: &dyn Source, encoding: TextEncoding) -> Result<Box<dyn Read + Send>> {
    let io_err = |e| Error::io(source.name(), e);
    let mut reader = source.open().map_err(io_err)?;
    let mut bom = [0u8; 3];
    let want = encoding.bom_len();
    if want > 0 {
        let mut got = 0;
        while got < want {
            match reader.read(&mut bom[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let mark = TextEncoding::from_bom(&bom[..got]);
        let ours = mark == Some(encoding)
            || (encoding == TextEncoding::Utf8 && mark == Some(TextEncoding::Utf8Bom));
        if !ours {
            // The caller chose the encoding; the bytes were not a mark after all.
            reader = Box::new(io::Cursor::new(bom[..got].to_vec()).chain(reader));
        }
    }
    Ok(match encoding.transcoder() {
        None => reader,
        Some(enc) => Box::new(Transcoder::new(reader, enc)),
    })
}

/// Streams `inner`, in the encoding `enc` (without a byte order mark), as
/// UTF-8: the same transcoding [`open_text`] applies, for readers that find
/// the encoding in the data (an XML declaration).
pub(crate) fn transcode(
    inner: Box<dyn Read + Send>,
    enc: &'static RsEncoding,
) -> Box<dyn Read + Send> {
    Box::new(Transcoder::new(inner, enc))
}

/// Streams another encoding as UTF-8.
struct Transcoder {
    inner: Box<dyn Read + Send>,
    decoder: Decoder,
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    eof: bool,
    /// The decoder has seen the end of the input; it must not be called again.
    finished: bool,
    /// 1-based line of the text decoded so far.
    line: u64,
    decoded: Vec<u8>,
    decoded_start: usize,
}

impl Transcoder {
    fn new(inner: Box<dyn Read + Send>, enc: &'static RsEncoding) -> Self {
        Self {
            inner,
            decoder: enc.new_decoder_without_bom_handling(),
            raw: vec![0; 64 * 1024],
            raw_start: 0,
            raw_end: 0,
            eof: false,
            finished: false,
            line: 1,
            decoded: Vec::with_capacity(3 * 64 * 1024 + 16),
            decoded_start: 0,
        }
    }

    /// Decodes the next block of input into `decoded`.
    fn refill(&mut self) -> io::Result<()> {
        while self.decoded_start == self.decoded.len() && !self.finished {
            if self.raw_start == self.raw_end && !self.eof {
                self.raw_start = 0;
                self.raw_end = self.inner.read(&mut self.raw)?;
                self.eof = self.raw_end == 0;
            }
            let input = &self.raw[self.raw_start..self.raw_end];
            let room = self
                .decoder
                .max_utf8_buffer_length(input.len())
                .unwrap_or(input.len() * 3 + 16);
            self.decoded.clear();
            self.decoded.resize(room.max(16), 0);
            self.decoded_start = 0;
            let (result, read, written) =
                self.decoder
                    .decode_to_utf8_without_replacement(input, &mut self.decoded, self.eof);
            self.raw_start += read;
            self.decoded.truncate(written);
            let lines = memchr::memchr_iter(b'\n', &self.decoded).count() as u64;
            match result {
                // A lone surrogate, a cut character, a byte of no character: no
                // UTF-8 keeps it, and U+FFFD would change the value unseen.
                DecoderResult::Malformed(..) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        Malformed {
                            line: self.line + lines,
                            reason: format!(
                                "malformed {} text (a lone surrogate, a cut character or a \
                                 byte that is no character of it)",
                                self.decoder.encoding().name()
                            ),
                        },
                    ))
                }
                DecoderResult::InputEmpty if self.eof => self.finished = true,
                _ => {}
            }
            self.line += lines;
        }
        Ok(())
    }
}

impl Read for Transcoder {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.refill()?;
        let n = out.len().min(self.decoded.len() - self.decoded_start);
        out[..n].copy_from_slice(&self.decoded[self.decoded_start..self.decoded_start + n]);
        self.decoded_start += n;
        Ok(n)
    }
}

/// Decodes bytes that are not valid UTF-8: valid sequences are kept, and
/// every invalid byte is read as Windows-1252, so no byte is lost.
pub fn utf8_lossless(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8);
    let mut fixed = 0;
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.extend_from_slice(s.as_bytes());
                return (out, fixed);
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.extend_from_slice(&rest[..good]);
                let bad = e.error_len().unwrap_or(rest.len() - good);
                for &b in &rest[good..good + bad] {
                    let one = [b];
                    let (text, _) = WINDOWS_1252.decode_without_bom_handling(&one);
                    out.extend_from_slice(text.as_bytes());
                    fixed += 1;
                }
                rest = &rest[good + bad..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(data: &[u8], encoding: TextEncoding, step: usize) -> Vec<u8> {
        let src = BytesSource {
            data: data.into(),
            name: "t".into(),
        };
        let mut r = open_text(&src, encoding).expect("opens");
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf).expect("reads");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn a_chosen_encoding_skips_its_own_mark_only() {
        let utf8 = TextEncoding::Utf8;
        assert_eq!(decode(b"\xEF\xBB\xBFid\n", utf8, 4096), b"id\n");
        assert_eq!(decode(b"id\n", utf8, 4096), b"id\n");
        assert_eq!(decode(b"i", utf8, 4096), b"i");
        assert_eq!(decode(b"", utf8, 4096), b"");
        // UTF-16 big-endian's mark is no mark of little-endian: it is text.
        assert_eq!(
            decode(b"\xFE\xFFa\x00", TextEncoding::Utf16Le, 4096),
            "\u{FFFE}a".as_bytes()
        );
        assert_eq!(decode(b"a\x00", TextEncoding::Utf16Le, 4096), b"a");
    }

    #[test]
    fn transcodes_whatever_the_read_size() {
        let text: String = (0..5000).map(|i| format!("{i},Zürich €\n")).collect();
        let cp1252: Vec<u8> = WINDOWS_1252.encode(&text).0.into_owned();
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        for step in [1, 3, 4, 7, 4096] {
            assert_eq!(
                decode(&cp1252, TextEncoding::Windows1252, step),
                text.as_bytes()
            );
            assert_eq!(decode(&utf16, TextEncoding::Utf16Le, step), text.as_bytes());
        }
    }

    #[test]
    fn malformed_utf16_is_an_error_with_its_line_not_a_replacement() {
        let src = |data: &[u8]| BytesSource {
            data: data.to_vec().into(),
            name: "t".into(),
        };
        let mut lone: Vec<u8> = "a\nb\nc"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        lone.extend_from_slice(&[0x00, 0xd8, b'x', 0]); // a high surrogate alone
        for (data, line) in [(&b"\xff\xfea"[..], 1), (&lone[..], 3)] {
            let mut r = open_text(&src(data), TextEncoding::Utf16Le).expect("opens");
            let err = r.read_to_end(&mut Vec::new()).expect_err("malformed");
            match Error::io("t", err) {
                Error::Parse {
                    line: at, reason, ..
                } => {
                    assert_eq!(at, line);
                    assert!(reason.contains("malformed UTF-16LE"), "{reason}");
                }
                other => panic!("{other}"),
            }
        }
    }
}
