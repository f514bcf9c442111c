//! The subscribers' refetches, sent as Chromium sends a same-origin `fetch()` (its headers, its `Accept-Encoding`)
//! yet cheaply enough that one core makes 10,000 of them per message: raw HTTP/1.1 over a pool of keep-alive
//! connections, each subscriber's request built once but for its query, and every answer decoded (gzip, deflate,
//! br, zstd or none) and read down to the message ids.
//!
//! Why a shared pool and not one connection per browser: a process may hold 20,000 open files here and 10,000 event
//! streams already take 10,000 of them; and behind a proxy (browsers speak HTTP/2 to nginx) the app sees a pool of
//! keep-alive connections too.

use anyhow::{anyhow, Context};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::wire;

/// What Chromium 131 on Linux sends with a `fetch()` after `Host`, the cookie aside. No `Referer`: the server answers
/// with `Referrer-Policy: no-referrer`.
const BROWSER_HEADERS: &str = "Connection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
Accept: */*\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: cors\r\n\
Sec-Fetch-Dest: empty\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n";

/// One origin's pages (`GET /api/messages`, or a feed's): where it is, and its pool of keep-alive connections.
pub struct Origin {
    address: String,
    host: String,
    /// `GET ` and the base URL's path, which every pages path follows.
    base: String,
    idle: Mutex<Vec<Connection>>,
    slots: Semaphore,
    opened: AtomicUsize,
}

impl Origin {
    /// `url` is `http://HOST[:PORT][/PATH]`; at most `connections` requests are in flight at once.
    pub fn new(url: &str, connections: usize) -> anyhow::Result<Self> {
        let rest = url.trim_end_matches('/').strip_prefix("http://").ok_or_else(|| anyhow!("{url}: not http://"))?;
        let (host, path) = rest.split_once('/').map_or((rest, ""), |(host, path)| (host, path));
        let address = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
        let start = if path.is_empty() { String::new() } else { format!("/{path}") };
        Ok(Self {
            address,
            host: host.to_owned(),
            base: format!("GET {start}"),
            idle: Mutex::new(Vec::with_capacity(connections)),
            slots: Semaphore::new(connections.max(1)),
            opened: AtomicUsize::new(0),
        })
    }

    /// Opens `count` connections ahead of the measurement, so the first message does not pay for them.
    pub async fn warm(&self, count: usize) -> anyhow::Result<()> {
        let opened = futures::future::try_join_all((0..count).map(|_| self.open())).await?;
        self.idle.lock().expect("poisoned").extend(opened);
        Ok(())
    }

    /// Connections opened so far: more than the pool's size means the server closed some keep-alive ones.
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// What follows the query in each of one subscriber's requests.
    pub fn tail(&self, cookie: Option<&str>) -> Arc<[u8]> {
        self.tail_with(cookie, None)
    }

    /// The same, with a private feed's read pass (`Authorization: Bearer`) as a member's tab sends it.
    pub fn tail_with(&self, cookie: Option<&str>, pass: Option<&str>) -> Arc<[u8]> {
        let cookie = cookie.map(|cookie| format!("Cookie: {cookie}\r\n")).unwrap_or_default();
        let pass = pass.map(|pass| format!("Authorization: Bearer {pass}\r\n")).unwrap_or_default();
        format!(" HTTP/1.1\r\nHost: {}\r\n{BROWSER_HEADERS}{cookie}{pass}\r\n", self.host).into_bytes().into()
    }

    /// The message ids of the page `GET /api/messages?{query}` answers.
    pub async fn page(&self, query: &str, tail: &[u8]) -> anyhow::Result<Vec<u64>> {
        self.page_at(wire::MESSAGES_PATH, query, tail).await
    }

    /// The message ids of the page `GET {path}?{query}` answers (`path`: a feed's, `wire::feed_api`).
    pub async fn page_at(&self, path: &str, query: &str, tail: &[u8]) -> anyhow::Result<Vec<u64>> {
        let mut request = Vec::with_capacity(self.base.len() + path.len() + 1 + query.len() + tail.len());
        request.extend_from_slice(self.base.as_bytes());
        request.extend_from_slice(path.as_bytes());
        request.push(b'?');
        request.extend_from_slice(query.as_bytes());
        request.extend_from_slice(tail);
        self.exchange(request).await
    }

    async fn exchange(&self, request: Vec<u8>) -> anyhow::Result<Vec<u64>> {
        let _slot = self.slots.acquire().await?;
        let idle = self.idle.lock().expect("poisoned").pop();
        let reused = idle.is_some();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.open().await?,
        };
        let answer = match connection.exchange(&request).await {
            // A kept-alive connection the server has closed meanwhile: a browser retries on a new one, once.
            Err(_) if reused => {
                connection = self.open().await?;
                connection.exchange(&request).await
            }
            answer => answer,
        };
        let (ids, keep_alive) = answer?;
        if keep_alive {
            self.idle.lock().expect("poisoned").push(connection);
        }
        Ok(ids)
    }

    async fn open(&self) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(&self.address).await.with_context(|| format!("connect {}", self.address))?;
        stream.set_nodelay(true)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Connection { stream, buffer: Vec::with_capacity(16 * 1024) })
    }
}

struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    /// Sends one request and reads its answer's ids; the flag says whether the connection may be used again.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(Vec<u64>, bool)> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let head = loop {
            self.read_more().await?;
            if let Some(head) = Head::parse(&self.buffer)? {
                break head;
            }
        };
        if !(200..300).contains(&head.status) {
            return Err(anyhow!("fetch answered {}", head.status));
        }
        let ids = match head.length {
            Some(length) => {
                while self.buffer.len() < head.size + length {
                    self.read_more().await?;
                }
                ids(head.encoding, &self.buffer[head.size..head.size + length])?
            }
            None => loop {
                if let Some(body) = dechunked(&self.buffer[head.size..])? {
                    break ids(head.encoding, &body)?;
                }
                self.read_more().await?;
            },
        };
        Ok((ids, head.keep_alive))
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        if self.buffer.capacity() - self.buffer.len() < 4096 {
            self.buffer.reserve(16 * 1024);
        }
        match self.stream.read_buf(&mut self.buffer).await? {
            0 => Err(anyhow!("the server closed the connection")),
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

/// What an answer's head says about reading its body.
struct Head {
    status: u16,
    /// Bytes of the head, blank line included.
    size: usize,
    /// `Content-Length`, or none for a chunked body.
    length: Option<usize>,
    encoding: Encoding,
    keep_alive: bool,
}

impl Head {
    fn parse(buffer: &[u8]) -> anyhow::Result<Option<Head>> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(size) = response.parse(buffer)? else { return Ok(None) };
        let mut head = Head {
            status: response.code.unwrap_or(0),
            size,
            length: None,
            encoding: Encoding::Identity,
            keep_alive: response.version == Some(1),
        };
        let mut chunked = false;
        for header in response.headers.iter() {
            let value = std::str::from_utf8(header.value).unwrap_or("").trim();
            if header.name.eq_ignore_ascii_case("content-length") {
                head.length = Some(value.parse().map_err(|_| anyhow!("Content-Length: {value}"))?);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if header.name.eq_ignore_ascii_case("connection") {
                head.keep_alive &= !value.eq_ignore_ascii_case("close");
            } else if header.name.eq_ignore_ascii_case("content-encoding") {
                head.encoding = match value.to_ascii_lowercase().as_str() {
                    "identity" => Encoding::Identity,
                    "gzip" | "x-gzip" => Encoding::Gzip,
                    "deflate" => Encoding::Deflate,
                    "br" => Encoding::Brotli,
                    "zstd" => Encoding::Zstd,
                    other => return Err(anyhow!("Content-Encoding: {other}")),
                };
            }
        }
        match (chunked, head.length) {
            (true, _) => head.length = None,
            (false, None) => return Err(anyhow!("an answer with neither Content-Length nor chunks")),
            (false, Some(_)) => {}
        }
        Ok(Some(head))
    }
}

/// A chunked body put together, or none while its last chunk has not arrived.
fn dechunked(mut data: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let httparse::Status::Complete((start, size)) =
            httparse::parse_chunk_size(data).map_err(|_| anyhow!("malformed chunk"))?
        else {
            return Ok(None);
        };
        let size = usize::try_from(size)?;
        if data.len() < start + size + 2 {
            return Ok(None);
        }
        if size == 0 {
            return Ok(Some(body)); // no trailers: the server sends none
        }
        body.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// The ids of a page as it came over the wire: decoded, then its JSON read as a browser's `response.json()` would.
fn ids(encoding: Encoding, body: &[u8]) -> anyhow::Result<Vec<u64>> {
    #[derive(serde::Deserialize)]
    struct Message {
        id: u64,
    }
    let mut decoded = Vec::new();
    match encoding {
        Encoding::Identity => {}
        Encoding::Gzip => _ = flate2::read::GzDecoder::new(body).read_to_end(&mut decoded)?,
        Encoding::Deflate => _ = flate2::read::ZlibDecoder::new(body).read_to_end(&mut decoded)?,
        Encoding::Brotli => _ = brotli_decompressor::Decompressor::new(body, 4096).read_to_end(&mut decoded)?,
        Encoding::Zstd => decoded = zstd::stream::decode_all(body)?,
    }
    let json = if matches!(encoding, Encoding::Identity) { body } else { &decoded };
    let page: Vec<Message> = serde_json::from_slice(json).context("a page that is not JSON")?;
    Ok(page.into_iter().map(|message| message.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PAGE: &[u8] = br#"[{"id":7,"user":"a","text":"x"},{"id":9,"user":"b","text":"y"}]"#;

    #[test]
    fn every_encoding_reads_down_to_the_ids() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(PAGE).unwrap();
        let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(PAGE).unwrap();
        assert_eq!(ids(Encoding::Identity, PAGE).unwrap(), [7, 9]);
        assert_eq!(ids(Encoding::Gzip, &gzip.finish().unwrap()).unwrap(), [7, 9]);
        assert_eq!(ids(Encoding::Deflate, &deflate.finish().unwrap()).unwrap(), [7, 9]);
        assert_eq!(ids(Encoding::Zstd, &zstd::stream::encode_all(PAGE, 3).unwrap()).unwrap(), [7, 9]);
    }

    #[test]
    fn a_chunked_body_is_whole_only_after_its_last_chunk() {
        let wire = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunked(wire).unwrap().unwrap(), b"hello world");
        assert!(dechunked(&wire[..wire.len() - 2]).unwrap().is_none());
        assert!(dechunked(&wire[..9]).unwrap().is_none());
    }

    #[test]
    fn a_head_says_how_to_read_its_body() {
        let head = Head::parse(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(head.encoding, Encoding::Brotli) && head.length.is_none() && head.keep_alive);
        let head =
            Head::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]").unwrap().unwrap();
        assert_eq!((head.length, head.keep_alive, head.size), (Some(2), false, 57));
        assert!(Head::parse(b"HTTP/1.1 200 OK\r\nContent-Len").unwrap().is_none());
    }
}
