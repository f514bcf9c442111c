//! Deadlines on the socket: a request's headers must come within `header` (a client that opens a connection and
//! trickles bytes holds no slot for long), a kept-alive connection's next request within the longer `idle` (a tab
//! whose chat is quiet for a while still refetches on a warm connection), and a peer that takes none of what the
//! server sends for `write` (an event stream nobody drains, once its small buffer is full and stays full) is dropped.
//!
//! These are the socket's ([`Guarded`]), not hyper's header timeout: that one also closes an idle connection at the
//! header deadline, and makes a timer for every request. The connection (`connection`) tells a `Guarded` when a
//! request's head is in ([`Answering`]) and when its stream no longer reads requests at all.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Time a client has to send a request's headers, from the connection's start or the request's first byte.
    pub header: Duration,
    /// Time a kept-alive connection may wait for its next request after an answer; then it is closed.
    pub idle: Duration,
    /// Time a client may take no bytes at all while the server has some to send; then the connection is dropped.
    pub write: Duration,
    /// After the shutdown signal: time in-flight requests have before the process exits anyway.
    pub shutdown_grace: Duration,
}

/// The service's side of a `Guarded` connection: it marks a request whose head is in, and the connection takes the
/// mark back when the answer's first bytes are written.
#[derive(Clone, Default)]
pub(super) struct Answering(Arc<AtomicBool>);

impl Answering {
    /// The head is in: no read deadline until the answer (a body is the request timeout's to bound).
    pub(super) fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A connection with deadlines. Writes must make progress: when the peer has taken no bytes for `write` while the
/// server had some to send, the write fails. Reads must bring a request in time: its head within `header` of the
/// connection's start or of the request's first byte, and after an answer the next request's first byte within
/// `idle`; a read that waits longer fails. While a request is being answered (the service marks `answering`) reads
/// have no deadline. A failed read or write closes the connection.
///
/// One read timer per connection, made at its first wait and moved only when a deadline comes earlier than the one
/// it is set for (a request's head arriving in parts) or when it fires early (the idle deadline moved on since it
/// was set): steady traffic sets it about once per `idle`, not once per request.
pub(super) struct Guarded<T> {
    io: T,
    deadlines: Deadlines,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Set by the service when hyper hands it a request; taken back when the answer's first bytes are written.
    answering: Answering,
    waiting: Waiting,
    read_timer: Option<Pin<Box<Sleep>>>,
    /// False once the connection carries a detached stream: a client that says nothing is what it should do.
    reads_guarded: bool,
}

/// What a connection's reads wait for.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// A request's head, begun at `since` (or the connection's start).
    Head { since: Instant },
    /// The next request after an answer, waited for since the first read that found nothing.
    Next { since: Option<Instant> },
}

impl<T> Guarded<T> {
    pub(super) fn new(io: T, deadlines: Deadlines) -> Self {
        Self {
            io,
            deadlines,
            stalled: None,
            answering: Answering::default(),
            waiting: Waiting::Head { since: Instant::now() },
            read_timer: None,
            reads_guarded: true,
        }
    }

    /// The handle the service marks each request with.
    pub(super) fn answering(&self) -> Answering {
        self.answering.clone()
    }

    /// Reads wait as long as they like from now on (a detached stream only watches for the client going).
    pub(super) fn unguard_reads(&mut self) {
        self.reads_guarded = false;
        self.read_timer = None;
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, attempt: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if attempt.is_ready() {
            self.stalled = None;
            return attempt;
        }
        let limit = self.deadlines.write;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// An answer's bytes went out: what the connection reads next is a next request (the rest of a long answer may
    /// still be written meanwhile; the idle deadline is the longer one).
    fn answered(&mut self, attempt: &Poll<io::Result<usize>>) {
        if matches!(attempt, Poll::Ready(Ok(written)) if *written > 0)
            && self.answering.0.swap(false, Ordering::Relaxed)
        {
            self.waiting = Waiting::Next { since: None };
        }
    }

    /// A read found nothing: pending until its deadline, then an error.
    fn wait_for_request(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.reads_guarded || self.answering.0.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        let deadline = match &mut self.waiting {
            Waiting::Head { since } => *since + self.deadlines.header,
            Waiting::Next { since } => *since.get_or_insert_with(Instant::now) + self.deadlines.idle,
        };
        loop {
            let timer = match &mut self.read_timer {
                Some(timer) => timer,
                None => self.read_timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if deadline < timer.deadline() {
                timer.as_mut().reset(deadline);
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => {
                    let what = match self.waiting {
                        Waiting::Head { .. } => "the request's headers took too long",
                        Waiting::Next { .. } => "the kept-alive connection was idle too long",
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                // Set for an earlier deadline than today's: wait for today's.
                Poll::Ready(()) => timer.as_mut().reset(deadline),
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.wait_for_request(cx),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                // The first bytes of a next request: its head has `header` from now.
                if let Waiting::Next { .. } = this.waiting {
                    this.waiting = Waiting::Head { since: Instant::now() };
                }
                Poll::Ready(Ok(()))
            }
            done => done,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_write(cx, buf);
        this.answered(&attempt);
        this.progress(cx, attempt)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.answered(&attempt);
        this.progress(cx, attempt)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let attempt = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(cx, attempt)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
