//! The exposition formats, independent of what is exposed: which format a scraper asked for,
//! the text helpers every writer uses (label and HELP escaping, exact millisecond-to-second
//! numbers, `# HELP`/`# TYPE` headers), and the [`Page`] a scrape is served from.
//!
//! A page is a list of shared [`Chunk`]s. Each chunk keeps its text and, made on first need,
//! its raw-deflate form ending on a byte boundary (a sync flush, no final block). Raw deflate
//! pieces that end like that can simply be concatenated; the page wraps them in one gzip
//! header, a final empty block and a trailer whose CRC-32 is combined from the chunks' CRCs.
//! So a gzip scrape is one ordinary gzip member (every decoder reads it), yet only chunks
//! whose text changed are ever compressed again, and all scrapes share the same bytes.
//!
//! A chunk that rarely changes can be kept compressed only ([`Chunk::compressed`]): about a
//! tenth of the memory. Its text is inflated again, a chunk at a time, when an identity body
//! is sent ([`Page::identity`]) or copied ([`Page::write_to`]).
//!
//! This module imports nothing else from the crate.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Prometheus text format 0.0.4, the default.
    #[default]
    Text,
    /// OpenMetrics 1.0.0: counters named without `_total` in `# HELP`/`# TYPE`, a
    /// `_created` sample per counter, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// The format to answer an `Accept` header (all its values) with: OpenMetrics when
    /// `application/openmetrics-text` (version 1.0.0, 0.0.1 or none) is accepted with a
    /// non-zero quality at least that of the text format (`text/plain`, `text/*` or `*/*`);
    /// otherwise, and without an `Accept` header, text.
    pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
        let mut openmetrics = 0.0f32;
        let mut text = 0.0f32;
        for value in accept {
            for range in value.split(',') {
                let mut fields = range.split(';');
                let media = fields.next().unwrap_or("").trim();
                let mut quality = 1.0f32;
                let mut version = None;
                for param in fields {
                    let Some((key, val)) = param.split_once('=') else {
                        continue;
                    };
                    let (key, val) = (key.trim(), val.trim().trim_matches('"'));
                    if key.eq_ignore_ascii_case("q") {
                        quality = val.parse().unwrap_or(0.0);
                    } else if key.eq_ignore_ascii_case("version") {
                        version = Some(val);
                    }
                }
                let is = |name: &str| media.eq_ignore_ascii_case(name);
                if is("application/openmetrics-text")
                    && version.is_none_or(|v| v == "1.0.0" || v == "0.0.1")
                {
                    openmetrics = openmetrics.max(quality);
                } else if (is("text/plain") && version.is_none_or(|v| v == "0.0.4"))
                    || is("text/*")
                    || is("*/*")
                {
                    text = text.max(quality);
                }
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Append `value` escaped as a label value: `\` → `\\`, `"` → `\"`, newline → `\n`;
/// everything else (any UTF-8) is kept as is. The same in both formats.
pub fn push_label_value(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Append `name="value"` with the value escaped.
pub fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    push_label_value(out, value);
    out.push('"');
}

/// Append a millisecond count as seconds, exactly and as short as possible:
/// `1700000000123` → `1700000000.123`, `1500` → `1.5`, `2000` → `2`, `-1` → `-0.001`.
///
/// Integer arithmetic only, so no binary floating-point artefacts (`…0.1230001`) can appear.
pub fn push_millis_as_seconds(out: &mut String, ms: i64) {
    let abs = ms.unsigned_abs();
    if ms < 0 {
        out.push('-');
    }
    let secs = abs / 1000;
    let mut frac = abs % 1000;
    let _ = write!(out, "{secs}");
    if frac == 0 {
        return;
    }
    let mut digits = 3;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    let _ = write!(out, ".{frac:0digits$}");
}

/// Append a sample value: `+Inf`, `-Inf`, `NaN`, else the shortest decimal that reads back
/// as the same number (valid in both formats).
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Append `# HELP name help` and `# TYPE name kind`. `help` is escaped for `format`
/// (`\` and newline; OpenMetrics also `"`). For an OpenMetrics counter, pass the family name
/// without `_total`.
pub fn push_header(out: &mut Vec<u8>, format: Format, name: &str, help: &str, kind: &str) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    for c in help.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '"' if format == Format::OpenMetrics => out.extend_from_slice(b"\\\""),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.push(b'\n');
}

/// The gzip member header: deflate, no flags, no mtime, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// A final fixed-Huffman deflate block holding only end-of-block.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Compressing a chunk failed (not expected with in-memory buffers).
#[derive(Debug, Clone, thiserror::Error)]
#[error("deflate failed: {0}")]
pub struct CompressError(String);

/// A piece of a page: text, plus its compressed form made once on first need; or, for a chunk
/// kept compressed only, just the compressed form.
pub struct Chunk {
    /// The text; `None` for a chunk kept compressed only.
    text: Option<Bytes>,
    /// The text's length in bytes.
    len: usize,
    deflated: OnceLock<Result<Deflated, CompressError>>,
}

struct Deflated {
    data: Bytes,
    crc: crc32fast::Hasher,
}

impl Chunk {
    pub fn new(text: impl Into<Bytes>) -> Chunk {
        let text = text.into();
        Chunk {
            len: text.len(),
            text: Some(text),
            deflated: OnceLock::new(),
        }
    }

    /// A chunk of `text` kept compressed only: compressed now, the text not kept.
    pub fn compressed(text: &[u8]) -> Result<Chunk, CompressError> {
        let deflated = deflate(text)?;
        Ok(Chunk {
            text: None,
            len: text.len(),
            deflated: OnceLock::from(Ok(deflated)),
        })
    }

    /// The text's length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text: shared, or inflated again for a chunk kept compressed only.
    pub fn text(&self) -> Result<Bytes, CompressError> {
        match &self.text {
            Some(text) => Ok(text.clone()),
            None => inflate(&self.deflated()?.data, self.len).map(Bytes::from),
        }
    }

    /// Whether the compressed form is made already.
    pub fn is_deflated(&self) -> bool {
        self.deflated.get().is_some()
    }

    /// Whether only the compressed form is kept.
    #[cfg(test)]
    pub(crate) fn is_compressed_only(&self) -> bool {
        self.text.is_none()
    }

    fn deflated(&self) -> Result<&Deflated, CompressError> {
        self.deflated
            .get_or_init(|| deflate(self.text.as_deref().unwrap_or_default()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Raw deflate of `text` at the fastest level, ending with a sync flush: byte-aligned, no
/// final block, no back-reference outside `text`, so it can be followed by any other piece.
fn deflate(text: &[u8]) -> Result<Deflated, CompressError> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(text);
    let mut out = Vec::with_capacity(text.len() / 6 + 64);
    if !text.is_empty() {
        let mut c = Compress::new(Compression::fast(), false);
        loop {
            let consumed = usize::try_from(c.total_in()).unwrap_or(text.len());
            let rest = text.get(consumed..).unwrap_or_default();
            c.compress_vec(rest, &mut out, FlushCompress::Sync)
                .map_err(|e| CompressError(e.to_string()))?;
            if usize::try_from(c.total_in()).ok() == Some(text.len()) && out.len() < out.capacity()
            {
                break;
            }
            out.reserve(out.capacity().max(4096));
        }
    }
    // Kept for as long as the chunk is: no spare capacity.
    out.shrink_to_fit();
    Ok(Deflated {
        data: Bytes::from(out),
        crc,
    })
}

/// The `len` bytes of text that [`deflate`] compressed into `data`.
fn inflate(data: &[u8], len: usize) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::with_capacity(len);
    let mut d = Decompress::new(false);
    while out.len() < len {
        let consumed = usize::try_from(d.total_in()).unwrap_or(data.len());
        let rest = data.get(consumed..).unwrap_or_default();
        let before = (d.total_in(), out.len());
        d.decompress_vec(rest, &mut out, FlushDecompress::Sync)
            .map_err(|e| CompressError(e.to_string()))?;
        if (d.total_in(), out.len()) == before {
            break;
        }
    }
    if out.len() != len {
        return Err(CompressError(format!(
            "inflated {} bytes, expected {len}",
            out.len()
        )));
    }
    Ok(out)
}

/// A whole response body in one format: the chunks in order, shared with the store and with
/// every other scrape served from them.
#[derive(Default, Clone)]
pub struct Page {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
}

impl Page {
    pub fn new() -> Page {
        Page::default()
    }

    /// Append a shared chunk.
    pub fn push(&mut self, chunk: Arc<Chunk>) {
        self.len += chunk.len;
        self.chunks.push(chunk);
    }

    /// Append text made for this page only.
    pub fn push_text(&mut self, text: impl Into<Bytes>) {
        self.push(Arc::new(Chunk::new(text)));
    }

    /// The identity body's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order.
    #[cfg(test)]
    pub(crate) fn chunks(&self) -> &[Arc<Chunk>] {
        &self.chunks
    }

    /// The identity body as frames to send, made as they are taken: the chunks' own bytes,
    /// not copied, and the text of a chunk kept compressed only inflated a chunk at a time.
    pub fn identity(&self) -> Identity {
        Identity {
            chunks: self.chunks.clone().into_iter(),
        }
    }

    /// Append the identity body to `out` (a copy).
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), CompressError> {
        out.reserve(self.len);
        for c in &self.chunks {
            match &c.text {
                Some(text) => out.extend_from_slice(text),
                None if c.len == 0 => {}
                None => out.extend_from_slice(&inflate(&c.deflated()?.data, c.len)?),
            }
        }
        Ok(())
    }

    /// The identity body in one buffer (a copy).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Result<Vec<u8>, CompressError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// The body as one gzip member, as frames to send: a header, every chunk's deflated bytes
    /// (compressing those not compressed yet, on up to `threads` threads), a final empty
    /// block and the trailer.
    pub fn gzip(&self, threads: usize) -> Result<Vec<Bytes>, CompressError> {
        self.deflate_missing(threads);
        let mut frames = Vec::with_capacity(self.chunks.len() + 2);
        frames.push(Bytes::from_static(&GZIP_HEADER));
        let mut crc = crc32fast::Hasher::new();
        for c in &self.chunks {
            let d = c.deflated()?;
            crc.combine(&d.crc);
            if !d.data.is_empty() {
                frames.push(d.data.clone());
            }
        }
        let mut tail = Vec::with_capacity(10);
        tail.extend_from_slice(&FINAL_BLOCK);
        tail.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        tail.extend_from_slice(&((self.len as u64 & 0xffff_ffff) as u32).to_le_bytes());
        frames.push(Bytes::from(tail));
        Ok(frames)
    }

    /// Compress the chunks that are not compressed yet, spread over up to `threads` threads
    /// when there is enough of them to be worth it.
    fn deflate_missing(&self, threads: usize) {
        let missing: Vec<&Arc<Chunk>> = self.chunks.iter().filter(|c| !c.is_deflated()).collect();
        let bytes: usize = missing.iter().map(|c| c.len).sum();
        let threads = threads.clamp(1, 8);
        if threads == 1 || bytes < 1 << 20 {
            return; // compressed one by one as the frames are made
        }
        // Interleaved, so each thread gets a similar share of every family.
        std::thread::scope(|scope| {
            for t in 0..threads {
                let missing = &missing;
                scope.spawn(move || {
                    for c in missing.iter().skip(t).step_by(threads) {
                        let _ = c.deflated();
                    }
                });
            }
        });
    }
}

/// The frames of an identity body ([`Page::identity`]), made as they are taken. A chunk kept
/// compressed only that fails to inflate (not expected: the store compressed it) ends the
/// frames early, so the body comes up short of its length and the connection is closed.
pub struct Identity {
    chunks: std::vec::IntoIter<Arc<Chunk>>,
}

impl Iterator for Identity {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        for c in self.chunks.by_ref() {
            if c.len == 0 {
                continue;
            }
            return c.text().ok();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_kept_compressed_only_reads_back_its_text() {
        let text: String = (0..5_000)
            .map(|i| format!("c{{target=\"t{i}\",x=\"录制\"}} {}\n", i * 11))
            .collect();
        let chunk = Chunk::compressed(text.as_bytes()).unwrap();
        assert!(chunk.is_compressed_only() && chunk.is_deflated());
        assert_eq!(chunk.len(), text.len());
        assert_eq!(chunk.text().unwrap(), text.as_bytes());
        let kept = Chunk::new(text.clone().into_bytes());
        assert!(!kept.is_compressed_only() && !kept.is_deflated());
        let empty = Chunk::compressed(b"").unwrap();
        assert!(empty.is_empty() && empty.text().unwrap().is_empty());
    }
}
