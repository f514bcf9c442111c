//! One Server-Sent Events reader for the tests and the bench (`bench/` includes this file by path: it may depend on
//! nothing of the app, and this needs only `std`). Bytes go in as they arrive; whole frames come out parsed.

/// One frame's fields; a keep-alive comment or a `retry:` frame has none of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: String,
}

/// What has arrived of a stream and not yet been read as a frame.
#[derive(Debug, Default)]
pub struct SseFrames {
    buffer: Vec<u8>,
}

impl SseFrames {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<SseEvent> {
        let end = self.buffer.windows(2).position(|pair| pair == b"\n\n")?;
        let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
        let mut event = SseEvent::default();
        for line in String::from_utf8_lossy(&frame).lines() {
            if let Some((field, value)) = line.split_once(':') {
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "event" => event.event = value,
                    "id" => event.id = value,
                    "data" => event.data = value,
                    _ => {}
                }
            }
        }
        Some(event)
    }
}
