//! The listening socket, the accept loop and the shutdown: accept until the signal, then stop accepting, let in-flight requests finish,
//! and return after a grace period whatever is still open.
//!
//! axum's own `serve` sets no header deadline and waits for every connection without limit, hence this loop
//! (hyper's connection builder, and a graceful-shutdown watch as hyper-util's).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::connection;
use super::deadline::Deadlines;
use super::Shortcut;

/// The listening socket. Accepted connections inherit its send buffer size, which also turns off the kernel's
/// growing of it (up to 4 MiB a connection here): what a client that stopped reading can hold stays small.
pub fn listen(addr: std::net::SocketAddr, send_buffer: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(send_buffer)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `app` on `listener` until `shutdown` resolves; then `on_shutdown` runs (it should end long-lived
/// responses such as event streams) and open connections get `deadlines.shutdown_grace` to finish. Each request is
/// offered to `shortcut` first (a hot read answered from memory, without the router's per-request work); what it
/// leaves (`None`) goes to `app`.
pub async fn serve<Q: Shortcut>(
    listener: TcpListener,
    app: Router,
    shortcut: Q,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl FnOnce(),
) {
    // Route tables are finished once here, not per connection.
    let app = app.with_state(());
    let http = connection::http();
    // Every connection holds a receiver: shutdown sends, then waits until none is left.
    let (draining, _) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            // `shutdown` first: startup's signal handlers exist from its first poll, so they exist before the first
            // request is accepted. In `select!`'s random order a connection already waiting could be answered
            // first, and a SIGTERM just after that answer would kill the process instead of shutting it down.
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        connection::spawn(&http, stream, peer, &app, &shortcut, deadlines, draining.subscribe());
    }
    drop(listener);
    on_shutdown();
    let _ = draining.send(());
    tokio::select! {
        () = draining.closed() => tracing::info!("every connection finished"),
        () = tokio::time::sleep(deadlines.shutdown_grace) => {
            tracing::warn!(grace = ?deadlines.shutdown_grace, "connections still open after the grace period; exiting");
        }
    }
}
