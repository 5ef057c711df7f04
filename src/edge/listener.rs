//! The accept loop (mini-redis's `Listener`): takes connections until shutdown, backs
//! off when accepting fails (out of file descriptors and the like) instead of spinning,
//! and hands each socket on. What a connection means is the caller's business.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::stream::{Stream, TlsStream};

/// Accepts connections on `listener` until `shutdown`, calling `on_accept` with each one
/// (Nagle off) and `on_error` for each failed accept.
pub async fn accept_loop(
    listener: TcpListener,
    shutdown: &CancellationToken,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
    on_error: impl Fn(&io::Error),
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = socket.set_nodelay(true);
                on_accept(socket, peer);
            }
            Err(e) => {
                on_error(&e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The client side of an accepted socket: as is, or after the TLS handshake when the
/// listener serves TLS.
pub async fn client_stream(
    socket: TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> io::Result<Stream> {
    match tls {
        None => Ok(Stream::Plain(socket)),
        Some(acceptor) => acceptor
            .accept(socket)
            .await
            .map(|s| Stream::Tls(Box::new(TlsStream::Server(s)))),
    }
}
