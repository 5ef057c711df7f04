//! tansu behind TLS for upstream-TLS tests.
//!
//! tansu 0.6.0 cannot terminate TLS itself: its CLI refuses `--cert` together with `--key`
//! ("cannot be used with"), and `--cert` alone (a PEM holding certificate and key, with a
//! `tcp://`, `tls://` or `ssl://` listener URL) still listens in plaintext. So a
//! tokio-rustls server terminates TLS in front of tansu's plaintext port and relays bytes,
//! and tansu advertises the relay's address, so every connection a client is sent to
//! (bootstrap and per-node) goes through TLS. The relay counts completed handshakes.

use std::net::TcpStream as StdTcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// tansu on a plaintext loopback port, advertised as the TLS relay's address.
pub struct TlsBroker {
    child: Child,
    /// The TLS relay's port (what tansu advertises).
    pub tls_port: u16,
    handshakes: Arc<AtomicUsize>,
}

impl TlsBroker {
    /// Starts the relay (with `cert_file`/`key_file`) and tansu, or returns `None` (after
    /// printing why) when `TANSU_BIN` is not set.
    pub async fn start(cert_file: &Path, key_file: &Path) -> Option<TlsBroker> {
        let bin = crate::tansu::tansu_bin()?;
        let plain_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let relay = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let tls_port = relay.local_addr().expect("relay addr").port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let acceptor = TlsAcceptor::from(server_config(cert_file, key_file));
        tokio::spawn(relay_loop(relay, acceptor, plain_port, handshakes.clone()));

        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{plain_port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{tls_port}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let broker = TlsBroker {
            child,
            tls_port,
            handshakes,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while StdTcpStream::connect(("127.0.0.1", plain_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {plain_port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(broker)
    }

    /// How many TLS handshakes the relay completed.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rustls server config from PEM files.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &std::fs::read(cert_file).expect("read cert")[..])
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut &std::fs::read(key_file).expect("read key")[..])
            .expect("PEM key")
            .expect("a private key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    Arc::new(config)
}

async fn relay_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    plain_port: u16,
    handshakes: Arc<AtomicUsize>,
) {
    while let Ok((socket, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        let handshakes = handshakes.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(socket).await else {
                return; // the client refused our certificate, or spoke plaintext
            };
            handshakes.fetch_add(1, Ordering::SeqCst);
            let Ok(mut plain) = TcpStream::connect(("127.0.0.1", plain_port)).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}
