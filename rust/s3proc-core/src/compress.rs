//! Compressed single files: the codec is found from the data's first bytes
//! and the data is decompressed while it streams, so a `.csv.gz` converts
//! like the `.csv` inside it, in the same bounded memory and with no
//! temporary file.
//!
//! The content decides: a gzip file named `x.csv` is decompressed, and a
//! zstd file named `x.gz` is read as zstd. A file whose name ends in a
//! compression suffix (`.gz`, `.gzip`, `.zst`, `.zstd`, `.bz2`, `.xz`) but
//! whose content is not compressed at all is refused with an error that says
//! what its first bytes look like: such a file is damaged or mislabelled,
//! and reading it as a plain table would give a valid-looking but wrong
//! result (a truncated gzip of a few bytes is still "text").
//!
//! # Memory
//! Every decoder streams with a fixed buffer. The codecs' own windows are
//! bounded too: gzip 32 KiB, bzip2 900 KB blocks, zstd frames needing a
//! window above 128 MiB are refused by zstd's default limit, and xz is
//! given a memory limit of [`XZ_MEMORY_LIMIT`]. A decompression bomb
//! therefore costs time, never memory.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::source::Source;

/// Bytes of the start of a source that [`Codec::from_magic`] looks at.
pub const MAGIC_BYTES: usize = 10;

/// Most memory the xz decoder may use (`xz -9` needs 65 MiB).
pub const XZ_MEMORY_LIMIT: u64 = 128 << 20;

/// Compressed bytes read from the source at a time.
const INPUT_BUFFER: usize = 256 << 10;

/// A compression format of single files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// gzip (RFC 1952), several concatenated members included.
    Gzip,
    /// Zstandard, several frames included.
    Zstd,
    /// bzip2, several concatenated streams included.
    Bzip2,
    /// xz, several concatenated streams included.
    Xz,
}

/// File name suffixes, lower case, and the codec each names.
const SUFFIXES: [(&str, Codec); 6] = [
    (".gz", Codec::Gzip),
    (".gzip", Codec::Gzip),
    (".zst", Codec::Zstd),
    (".zstd", Codec::Zstd),
    (".bz2", Codec::Bzip2),
    (".xz", Codec::Xz),
];

impl Codec {
    /// The name used in metadata and messages: `gzip`, `zstd`, `bzip2`, `xz`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
        }
    }

    /// The codec whose signature starts `head` (give it [`MAGIC_BYTES`]
    /// bytes, or the whole data when it is shorter).
    pub fn from_magic(head: &[u8]) -> Option<Self> {
        match head {
            // ID1, ID2 and CM = 8 (deflate, the only method defined).
            [0x1f, 0x8b, 0x08, ..] => Some(Codec::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Codec::Zstd),
            // A skippable frame, which zstd streams may start with.
            [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Some(Codec::Zstd),
            // "BZh", the block size '1'..'9', then the magic of a first
            // block (pi) or of the end of an empty stream (sqrt pi): a table
            // whose header starts with "BZh" is not mistaken for bzip2.
            [b'B', b'Z', b'h', b'1'..=b'9', rest @ ..]
                if rest.starts_with(&[0x31, 0x41, 0x59, 0x26, 0x53, 0x59])
                    || rest.starts_with(&[0x17, 0x72, 0x45, 0x38, 0x50, 0x90]) =>
            {
                Some(Codec::Bzip2)
            }
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(Codec::Xz),
            _ => None,
        }
    }

    /// The codec a file name's last suffix names (case-insensitive), and
    /// the name without that suffix: `("x.csv", Gzip)` for `x.csv.gz`.
    pub fn from_name(name: &str) -> Option<(Self, &str)> {
        SUFFIXES.iter().find_map(|&(suffix, codec)| {
            let cut = name.len().checked_sub(suffix.len())?;
            let tail = name.get(cut..)?;
            (cut > 0 && tail.eq_ignore_ascii_case(suffix)).then(|| (codec, &name[..cut]))
        })
    }

    /// The usual file extension, without the dot: `gz`, `zst`, `bz2`, `xz`.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Zstd => "zst",
            Codec::Bzip2 => "bz2",
            Codec::Xz => "xz",
        }
    }

    /// A streaming decoder of `compressed`, for messages named `file`.
    ///
    /// The decoder's errors are reported as [`io::ErrorKind::InvalidData`]
    /// naming the file and the codec; errors of `compressed` itself (a
    /// failed read, a Python exception) come through unchanged.
    pub fn decoder(self, compressed: Box<dyn Read + Send>, file: &str) -> Box<dyn Read + Send> {
        Box::new(self.decode(compressed, file))
    }

    /// [`Self::decoder`] of any reader (an archive's entry, which borrows
    /// its archive); the decoder is `Send` when `compressed` is.
    pub fn decode<R: Read>(self, compressed: R, file: &str) -> Checked<R> {
        let input = BufReader::with_capacity(INPUT_BUFFER, Passthrough(compressed));
        let decoder = match self {
            Codec::Gzip => Decoding::Gzip(Members(Some(flate2::bufread::GzDecoder::new(input)))),
            Codec::Zstd => match zstd::stream::read::Decoder::with_buffer(input) {
                Ok(d) => Decoding::Zstd(d),
                Err(e) => Decoding::Failed(Some(e)),
            },
            Codec::Bzip2 => Decoding::Bzip2(bzip2::bufread::MultiBzDecoder::new(input)),
            Codec::Xz => {
                match liblzma::stream::Stream::new_stream_decoder(
                    XZ_MEMORY_LIMIT,
                    liblzma::stream::CONCATENATED,
                ) {
                    Ok(stream) => {
                        Decoding::Xz(liblzma::bufread::XzDecoder::new_stream(input, stream))
                    }
                    Err(e) => Decoding::Failed(Some(io::Error::other(e))),
                }
            }
        };
        Checked {
            decoder,
            codec: self,
            file: file.to_owned(),
        }
    }
}

type Input<R> = BufReader<Passthrough<R>>;

/// One codec's decoder (or the error of making it, given on the first read).
enum Decoding<R: Read> {
    Gzip(Members<Input<R>>),
    Zstd(zstd::stream::read::Decoder<'static, Input<R>>),
    Bzip2(bzip2::bufread::MultiBzDecoder<Input<R>>),
    Xz(liblzma::bufread::XzDecoder<Input<R>>),
    Failed(Option<io::Error>),
}

impl<R: Read> Read for Decoding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoding::Gzip(d) => d.read(buf),
            Decoding::Zstd(d) => d.read(buf),
            Decoding::Bzip2(d) => d.read(buf),
            Decoding::Xz(d) => d.read(buf),
            Decoding::Failed(e) => Err(e
                .take()
                .unwrap_or_else(|| io::Error::other("the decoder could not be created"))),
        }
    }
}

/// gzip members one after the other, as `gzip -d` reads them, then at most
/// zero bytes (the padding of a block device or a tape): anything else
/// after the last member is an error saying so, not a member whose header
/// is bad.
struct Members<R: BufRead>(Option<flate2::bufread::GzDecoder<R>>);

impl<R: BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(member) = self.0.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let Some(mut input) = self.0.take().map(flate2::bufread::GzDecoder::into_inner) else {
                return Ok(0);
            };
            match input.fill_buf()?.first() {
                None => return Ok(0),
                Some(0x1f) => self.0 = Some(flate2::bufread::GzDecoder::new(input)),
                Some(_) => return zero_padding(&mut input).map(|()| 0),
            }
        }
    }
}

/// Reads `input` to its end, which must hold only zero bytes.
fn zero_padding(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let head = input.fill_buf()?;
        if head.is_empty() {
            return Ok(());
        }
        if head.iter().any(|&b| b != 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "data after the end of the gzip stream that is not another gzip member",
            ));
        }
        let n = head.len();
        input.consume(n);
    }
}

/// What a source's first bytes say: its codec, or `None` for data that is
/// not compressed (an empty source included).
///
/// # Errors
/// I/O errors of opening or reading the source.
pub fn detect(source: &dyn Source) -> Result<Option<Codec>> {
    let io_err = |e| Error::io(source.name(), e);
    let mut head = Vec::with_capacity(MAGIC_BYTES);
    source
        .open()
        .map_err(io_err)?
        .take(MAGIC_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    Ok(Codec::from_magic(&head))
}

/// `source` itself when it is not compressed, else a [`Decompressed`] view.
///
/// # Errors
/// I/O errors of reading the source's first bytes; an [`Error::Io`] of kind
/// [`io::ErrorKind::InvalidData`] when the name ends in a compression
/// suffix but the content is not compressed (see the module's doc).
pub fn auto(source: Arc<dyn Source>) -> Result<Arc<dyn Source>> {
    let detected = detect(source.as_ref())?;
    let named = Codec::from_name(source.name());
    Ok(match (detected, named) {
        (Some(codec), _) => Arc::new(Decompressed::new(source, codec)),
        (None, None) => source,
        (None, Some((codec, _))) => {
            let name = source.name();
            let mut head = Vec::new();
            // Best effort: only for the message.
            if let Ok(r) = source.open() {
                let _ = r.take(16).read_to_end(&mut head);
            }
            let why = format!(
                "the name says {} but the data is not {} ({}); \
                 rename the file if it is not compressed",
                codec.name(),
                codec.name(),
                describe_head(&head)
            );
            return Err(Error::io(
                name,
                io::Error::new(io::ErrorKind::InvalidData, why),
            ));
        }
    })
}

/// A few words on what uncompressed data starts with.
fn describe_head(head: &[u8]) -> String {
    if head.is_empty() {
        return "it is empty".into();
    }
    let printable = head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace() || b >= 0x80);
    if printable {
        format!("it starts with {:?}", String::from_utf8_lossy(head))
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
        format!("it starts with bytes {}", hex.join(" "))
    }
}

/// A compressed source seen decompressed. Every [`Source::open`] opens the
/// compressed source again and decodes it from its start, so a conversion
/// that restarts simply decompresses again.
pub struct Decompressed {
    inner: Arc<dyn Source>,
    codec: Codec,
    name: String,
}

impl Decompressed {
    /// `inner` decoded with `codec`.
    pub fn new(inner: Arc<dyn Source>, codec: Codec) -> Self {
        let name = match Codec::from_name(inner.name()) {
            Some((_, stem)) => stem.to_owned(),
            None => inner.name().to_owned(),
        };
        Self { inner, codec, name }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }
}

impl Source for Decompressed {
    /// The name without its compression suffix, so that detection by
    /// extension sees the format inside: `x.csv` for `x.csv.gz`.
    fn name(&self) -> &str {
        &self.name
    }

    /// The compressed source's own name: `x.csv.gz`.
    fn original_name(&self) -> &str {
        self.inner.original_name()
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(self.codec.decoder(self.inner.open()?, self.inner.name()))
    }

    fn metadata(&self) -> Vec<(String, String)> {
        let mut out = self.inner.metadata();
        out.push(("s3proc.compression".into(), self.codec.name().into()));
        out
    }
}

/// Marks the errors of the compressed input, so that [`Checked`] can tell
/// them from the decoder's own and hand them on unchanged.
struct Passthrough<R>(R);

#[derive(Debug)]
struct InputError(io::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InputError {}

impl<R: Read> Read for Passthrough<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), InputError(e)))
    }
}

/// A decoder whose own errors name the file and the codec.
pub struct Checked<R: Read> {
    decoder: Decoding<R>,
    codec: Codec,
    file: String,
}

impl<R: Read> Checked<R> {
    fn explain(&self, e: io::Error) -> io::Error {
        if e.get_ref().is_some_and(|inner| inner.is::<InputError>()) {
            if let Some(Ok(InputError(original))) =
                e.into_inner().map(|i| i.downcast()).map(|r| r.map(|b| *b))
            {
                return original;
            }
            return io::Error::other("reading the compressed data failed");
        }
        let codec = self.codec.name();
        let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
            "truncated: the data ends inside a compressed stream".to_owned()
        } else {
            e.to_string()
        };
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt {codec} data in {}: {reason}", self.file),
        )
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.decoder.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map_err(|e| self.explain(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::source::BytesSource;

    fn source(data: Vec<u8>, name: &str) -> Arc<dyn Source> {
        Arc::new(BytesSource {
            data: data.into(),
            name: name.into(),
        })
    }

    fn text() -> Vec<u8> {
        (0..20_000)
            .map(|i| format!("{i},name {i},{}.5\n", i * 7))
            .collect::<String>()
            .into_bytes()
    }

    fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
        match codec {
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).expect("compresses");
                e.finish().expect("compresses")
            }
            Codec::Zstd => zstd::stream::encode_all(data, 3).expect("compresses"),
            Codec::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).expect("compresses");
                e.finish().expect("compresses")
            }
            Codec::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).expect("compresses");
                e.finish().expect("compresses")
            }
        }
    }

    const ALL: [Codec; 4] = [Codec::Gzip, Codec::Zstd, Codec::Bzip2, Codec::Xz];

    fn read_all(src: &dyn Source) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        src.open()?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_codec_round_trips_and_reopens() {
        let plain = text();
        for codec in ALL {
            let packed = compress(codec, &plain);
            assert_eq!(Codec::from_magic(&packed), Some(codec));
            let src = auto(source(packed, "t.csv.gz")).expect("detects");
            assert_eq!(src.name(), "t.csv");
            assert_eq!(src.original_name(), "t.csv.gz");
            for _ in 0..2 {
                assert_eq!(read_all(src.as_ref()).expect("decodes"), plain, "{codec:?}");
            }
            let meta = src.metadata();
            assert_eq!(meta, [("s3proc.compression".into(), codec.name().into())]);
        }
    }

    #[test]
    fn concatenated_members_are_all_read() {
        let plain = text();
        let (a, b) = plain.split_at(plain.len() / 3);
        for codec in ALL {
            let mut packed = compress(codec, a);
            packed.extend(compress(codec, b));
            let src = auto(source(packed, "t")).expect("detects");
            assert_eq!(read_all(src.as_ref()).expect("decodes"), plain, "{codec:?}");
        }
    }

    #[test]
    fn zero_padding_after_gzip_is_read_and_other_data_is_an_error() {
        let plain = text();
        let mut padded = compress(Codec::Gzip, &plain);
        padded.extend([0u8; 10_000]);
        let src = auto(source(padded.clone(), "t.gz")).expect("detects");
        assert_eq!(read_all(src.as_ref()).expect("decodes"), plain);
        padded.extend(b"junk");
        let src = auto(source(padded, "t.gz")).expect("detects");
        let e = read_all(src.as_ref()).expect_err("junk after the stream");
        assert!(
            e.to_string().contains("after the end of the gzip stream"),
            "{e}"
        );
    }

    #[test]
    fn truncated_and_corrupt_data_are_errors_naming_file_and_codec() {
        let plain = text();
        for codec in ALL {
            let packed = compress(codec, &plain);
            for cut in [packed.len() - 1, packed.len() - 9, packed.len() / 2, 12] {
                let src = auto(source(packed[..cut].to_vec(), "t.csv.gz")).expect("detects");
                let err = read_all(src.as_ref()).expect_err("truncated");
                let msg = err.to_string();
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::InvalidData,
                    "{codec:?} {cut}: {msg}"
                );
                assert!(
                    msg.contains(codec.name()) && msg.contains("t.csv.gz"),
                    "{msg}"
                );
            }
            let mut bad = packed.clone();
            let mid = bad.len() / 2;
            bad[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0x5a);
            let src = auto(source(bad, "t")).expect("detects");
            let err = read_all(src.as_ref()).expect_err("corrupt");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{codec:?}: {err}");
        }
    }

    #[test]
    fn content_wins_over_the_name() {
        let plain = text();
        let gz = compress(Codec::Gzip, &plain);
        let src = auto(source(gz, "x.csv")).expect("detects");
        assert_eq!(src.name(), "x.csv");
        assert_eq!(read_all(src.as_ref()).expect("decodes"), plain);
        let zst = compress(Codec::Zstd, &plain);
        let src = auto(source(zst, "x.csv.GZ")).expect("detects");
        assert_eq!(src.name(), "x.csv");
        assert_eq!(src.metadata()[0].1, "zstd");
        // Not compressed, not named so: the source itself.
        let src = auto(source(plain.clone(), "x.csv")).expect("plain");
        assert!(src.metadata().is_empty());
    }

    #[test]
    fn a_compressed_name_on_plain_data_is_refused() {
        for (data, says) in [
            (b"a,b\n1,2\n".to_vec(), "\"a,b\\n1,2\\n\""),
            (vec![0u8, 1, 2], "bytes 00 01 02"),
            (vec![0x1f], "bytes 1f"),
            (Vec::new(), "empty"),
        ] {
            let err = auto(source(data, "x.csv.gz")).err().expect("refused");
            let msg = err.to_string();
            assert!(
                msg.contains("x.csv.gz") && msg.contains("gzip") && msg.contains(says),
                "{msg}"
            );
        }
    }

    #[test]
    fn names_and_magic() {
        assert_eq!(Codec::from_name("a.csv.bz2"), Some((Codec::Bzip2, "a.csv")));
        assert_eq!(Codec::from_name("a.ZSTD"), Some((Codec::Zstd, "a")));
        assert_eq!(Codec::from_name(".gz"), None);
        assert_eq!(Codec::from_name("a.tgz"), None);
        assert_eq!(Codec::from_name("é.xz"), Some((Codec::Xz, "é")));
        assert_eq!(Codec::from_magic(b"BZh9,col\n"), None);
        assert_eq!(Codec::from_magic(&[0x1f, 0x8b]), None);
    }

    #[test]
    fn errors_of_the_input_come_through_unchanged() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::PermissionDenied, "nope"))
            }
        }
        let mut r = Codec::Gzip.decoder(Box::new(Broken), "t");
        let err = r.read(&mut [0u8; 16]).expect_err("fails");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(err.to_string(), "nope");
    }
}
