//! A response body made once and sent many times (a page of the log): its bytes as they are, and its brotli and gzip
//! forms, each made by the first request that accepts it and then shared, instead of compressing the same bytes
//! again for every request as a compression layer would.
//!
//! A body under `COMPRESS_FROM` bytes is always sent as it is: a notice's refetch answers one or two messages (about
//! 100 bytes each), which compression would not shrink below the response's own headers, for CPU on every request.

use std::io::Write;
use std::sync::OnceLock;

use axum::body::Bytes;

/// Smallest body worth compressing.
pub const COMPRESS_FROM: usize = 1024;
/// Brotli quality and window: fast to make once, within a few percent of `-q 11` on JSON this small.
const BROTLI_QUALITY: u32 = 5;
const BROTLI_WINDOW: u32 = 20;

/// A content coding this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Brotli,
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` value, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Brotli => Some("br"),
            Self::Gzip => Some("gzip"),
        }
    }
}

#[derive(Debug)]
pub struct Encoded {
    identity: Bytes,
    /// `None` once made: the compressed form was no smaller.
    brotli: OnceLock<Option<Bytes>>,
    gzip: OnceLock<Option<Bytes>>,
}

impl Encoded {
    pub fn new(identity: Bytes) -> Self {
        Self { identity, brotli: OnceLock::new(), gzip: OnceLock::new() }
    }

    /// Whether the answer depends on `Accept-Encoding` (so it carries `Vary: Accept-Encoding`).
    pub fn varies(&self) -> bool {
        self.identity.len() >= COMPRESS_FROM
    }

    /// The bytes to send to a client whose `Accept-Encoding` is `accept`, and their coding: brotli, else gzip, else
    /// as they are.
    pub fn for_accept(&self, accept: Option<&[u8]>) -> (Bytes, Coding) {
        if let (true, Some(accept)) = (self.varies(), accept) {
            if accepts(accept, b"br") {
                if let Some(bytes) = self.brotli.get_or_init(|| smaller(&self.identity, brotli(&self.identity))) {
                    return (bytes.clone(), Coding::Brotli);
                }
            }
            if accepts(accept, b"gzip") {
                if let Some(bytes) = self.gzip.get_or_init(|| smaller(&self.identity, gzip(&self.identity))) {
                    return (bytes.clone(), Coding::Gzip);
                }
            }
        }
        (self.identity.clone(), Coding::Identity)
    }
}

fn smaller(identity: &[u8], compressed: Option<Vec<u8>>) -> Option<Bytes> {
    compressed.filter(|compressed| compressed.len() < identity.len()).map(Bytes::from)
}

fn brotli(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out =
        brotli::CompressorWriter::new(Vec::with_capacity(bytes.len() / 4), 4096, BROTLI_QUALITY, BROTLI_WINDOW);
    out.write_all(bytes).ok()?;
    Some(out.into_inner())
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::new(6));
    out.write_all(bytes).ok()?;
    out.finish().ok()
}

/// Whether an `Accept-Encoding` value takes `coding` (named, with no `q=0`).
fn accepts(accept: &[u8], coding: &[u8]) -> bool {
    accept.split(|byte| *byte == b',').any(|item| {
        let mut parts = item.split(|byte| *byte == b';');
        let named = parts.next().is_some_and(|name| name.trim_ascii().eq_ignore_ascii_case(coding));
        named && !parts.any(|param| refuses(param.trim_ascii()))
    })
}

/// `q=0`, `q=0.0`, `q=0.000`: the client refuses the coding.
fn refuses(param: &[u8]) -> bool {
    match param {
        [b'q' | b'Q', b'=', b'0', rest @ ..] => rest.iter().all(|b| *b == b'0' || *b == b'.'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const CHROMIUM: &[u8] = b"gzip, deflate, br, zstd";

    fn page(len: usize) -> Bytes {
        let message = br#"{"id":1,"user":"ada","text":"hello there","at":"2026-11-26T19:00:00Z"},"#;
        Bytes::from(message.iter().copied().cycle().take(len).collect::<Vec<u8>>())
    }

    #[test]
    fn tiny_bodies_go_as_they_are_and_large_ones_compressed_once() {
        let tiny = Encoded::new(page(COMPRESS_FROM - 1));
        assert!(!tiny.varies());
        assert_eq!(tiny.for_accept(Some(CHROMIUM)), (page(COMPRESS_FROM - 1), Coding::Identity));

        let large = Encoded::new(page(20_000));
        assert!(large.varies());
        let (first, coding) = large.for_accept(Some(CHROMIUM));
        assert_eq!(coding, Coding::Brotli);
        assert!(first.len() < 2_000, "{}", first.len());
        let (again, _) = large.for_accept(Some(CHROMIUM));
        assert_eq!(first.as_ptr(), again.as_ptr(), "made once, shared");
        let mut plain = Vec::new();
        brotli::Decompressor::new(&first[..], 4096).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, page(20_000));

        let (gzipped, coding) = large.for_accept(Some(b"gzip;q=1, br;q=0"));
        assert_eq!(coding, Coding::Gzip);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, page(20_000));

        for refusing in [None, Some(&b"identity"[..]), Some(b"br;q=0, gzip;q=0.0"), Some(b"zstd"), Some(b"")] {
            assert_eq!(large.for_accept(refusing).1, Coding::Identity, "{refusing:?}");
        }
    }

    #[test]
    fn accept_encoding_is_read_by_token() {
        assert!(accepts(b"gzip, deflate, br, zstd", b"br"));
        assert!(accepts(b"BR;q=0.5", b"br"));
        assert!(!accepts(b"brotli, xbr", b"br"));
        assert!(!accepts(b"br;q=0", b"br"));
        assert!(accepts(b"br;q=0.01", b"br"));
    }
}
