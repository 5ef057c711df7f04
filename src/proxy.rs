//! The running proxy: shared state, the bootstrap and per-broker listeners, upstream
//! connects, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::Connector;
use crate::config::{split_host_port, Config, ConfigError};
use crate::metrics::Metrics;
use crate::nodes::{NodeRegistry, OpenListener};
use crate::sasl::Credentials;
use crate::stream::{Stream, TlsStream};
use crate::watch::ConsumerWatch;

/// Where a client connection goes.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The bootstrap listener: any broker of the cluster.
    Bootstrap,
    /// The listener of one broker node.
    Node(i32),
}

/// State shared by every connection.
pub struct Proxy {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Known brokers and their local listeners.
    pub nodes: NodeRegistry,
    /// The consumer watcher, when poison detection or transforms are configured.
    pub watch: Option<Arc<ConsumerWatch>>,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// Every connection task, for draining on shutdown.
    pub tasks: TaskTracker,
    ready: AtomicBool,
    next_conn: AtomicU64,
    next_bootstrap: AtomicUsize,
    /// How to reach a broker (TCP, then TLS when configured); its SASL credentials are for
    /// the proxy's own connections only, never applied to a client's.
    upstream: Connector,
    downstream_tls: Option<tokio_rustls::TlsAcceptor>,
    /// One permit per client connection served (`proxy.max_connections`).
    connection_slots: Arc<Semaphore>,
    /// When a refused connection was last logged (ms since start), to log once a second.
    refusal_logged_ms: AtomicU64,
    started: std::time::Instant,
}

impl Proxy {
    /// Builds the shared state; returns the receiver of listener-open requests that
    /// [`Proxy::run`] serves.
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        watch: Option<Arc<ConsumerWatch>>,
    ) -> Result<(Arc<Proxy>, mpsc::UnboundedReceiver<OpenListener>), ConfigError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let upstream = Connector::from_config(&config.upstream)?;
        let downstream_tls = match &config.proxy.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::downstream_config(t)?,
            )),
            None => None,
        };
        let config = Arc::new(config);
        let port_config = config.clone();
        let nodes = NodeRegistry::new(
            config.proxy.advertised_host.clone(),
            move |id| port_config.node_port(id),
            tx,
        );
        let connection_slots = Arc::new(Semaphore::new(config.proxy.max_connections));
        let proxy = Proxy {
            connection_slots,
            refusal_logged_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
            config,
            metrics,
            nodes,
            watch,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            ready: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            next_bootstrap: AtomicUsize::new(0),
            upstream,
            downstream_tls,
        };
        Ok((Arc::new(proxy), rx))
    }

    /// Whether the upstream cluster has answered a Metadata request.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Notes that the cluster answered Metadata.
    pub fn mark_ready(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            tracing::info!("upstream cluster answered Metadata: ready");
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Serves the bootstrap listener and opens node listeners as they are learned, until
    /// shutdown; then waits up to the grace period for connections to drain.
    pub async fn run(
        self: Arc<Self>,
        bootstrap: TcpListener,
        mut open: mpsc::UnboundedReceiver<OpenListener>,
    ) {
        let accept = self.clone().accept_loop(bootstrap, Target::Bootstrap);
        self.tasks.spawn(accept);
        let this = self.clone();
        let opener = async move {
            while let Some(req) = open.recv().await {
                let addr = format!("{}:{}", this.config.bind_host(), req.port);
                match TcpListener::bind(&addr).await {
                    Ok(l) => {
                        tracing::info!(node_id = req.node_id, listen = %addr, "broker node listener open");
                        this.tasks
                            .spawn(this.clone().accept_loop(l, Target::Node(req.node_id)));
                        let _ = req.done.send(Ok(()));
                    }
                    Err(e) => {
                        this.metrics.error("listener_bind");
                        let _ = req.done.send(Err(format!("bind {addr}: {e}")));
                    }
                }
            }
        };
        tokio::select! {
            _ = opener => {}
            _ = self.shutdown.cancelled() => {}
        }
        self.tasks.close();
        let grace = Duration::from_millis(self.config.proxy.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = self.config.proxy.shutdown_grace_ms,
                "connections still open after the shutdown grace period; closing them"
            );
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, target: Target) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = self.shutdown.cancelled() => return,
            };
            match accepted {
                Ok((socket, peer)) => {
                    backoff = Duration::from_millis(5);
                    let Ok(slot) = self.connection_slots.clone().try_acquire_owned() else {
                        self.refuse(socket, peer);
                        continue;
                    };
                    let _ = socket.set_nodelay(true);
                    let this = self.clone();
                    let id = self.next_conn_id();
                    let span =
                        tracing::info_span!("conn", id, client = %peer, node = ?node_of(target));
                    self.tasks.spawn(
                        async move {
                            this.serve(socket, peer, target, id).await;
                            drop(slot);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    self.metrics.error("accept");
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Closes a connection accepted past `proxy.max_connections`; logs at most once a second.
    fn refuse(&self, socket: TcpStream, peer: SocketAddr) {
        self.metrics.connections_refused.inc();
        drop(socket);
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.refusal_logged_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .refusal_logged_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                client = %peer,
                max_connections = self.config.proxy.max_connections,
                refused_total = self.metrics.connections_refused.get(),
                "connection limit reached: closing new client connections until some close (proxy.max_connections)"
            );
        }
    }

    async fn serve(self: Arc<Self>, socket: TcpStream, peer: SocketAddr, target: Target, id: u64) {
        self.metrics.connections_total.inc();
        self.metrics.connections_open.inc();
        let client = match &self.downstream_tls {
            None => Ok(Stream::Plain(socket)),
            Some(acceptor) => acceptor
                .accept(socket)
                .await
                .map(|s| Stream::Tls(Box::new(TlsStream::Server(s)))),
        };
        match client {
            Ok(client) => crate::connection::run(self.clone(), client, peer, target, id).await,
            Err(e) => {
                self.metrics.error("client_tls");
                tracing::warn!(error = %e, "client TLS handshake failed");
            }
        }
        self.metrics.connections_open.dec();
    }

    /// Connects to the broker a client connection is meant for.
    pub async fn connect_upstream(&self, target: Target) -> Result<Stream, String> {
        let servers: Vec<(String, u16)> = match target {
            Target::Node(id) => vec![self
                .nodes
                .upstream_of(id)
                .ok_or_else(|| format!("broker node {id} is not known yet"))?],
            Target::Bootstrap => {
                let all = &self.config.upstream.bootstrap_servers;
                let start = self.next_bootstrap.fetch_add(1, Ordering::Relaxed);
                (0..all.len())
                    .filter_map(|i| split_host_port(&all[(start + i) % all.len()]))
                    .collect()
            }
        };
        let mut last = String::from("no upstream address");
        for (host, port) in servers {
            match self.upstream.connect(&host, port).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The credentials the proxy's own connections authenticate with (`upstream.sasl`).
    pub fn own_credentials(&self) -> Option<&Credentials> {
        self.upstream.sasl()
    }
}

fn node_of(target: Target) -> Option<i32> {
    match target {
        Target::Bootstrap => None,
        Target::Node(id) => Some(id),
    }
}
