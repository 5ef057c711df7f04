//! The proxy's shared state: configuration, metrics, known brokers, the hooks, shutdown,
//! and how to reach the broker a client connection is meant for. Generic over the
//! [`Hooks`] the watcher implements; [`super::serve`] runs it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::sasl::Credentials;
use crate::cluster::Connector;
use crate::config::{split_host_port, Config, ConfigError};
use crate::edge::stream::Stream;
use crate::ops::metrics::Metrics;
use crate::route::budget::{self, Budget};
use crate::route::hooks::Hooks;
use crate::route::nodes::{NodeRegistry, OpenListener};

/// Where a client connection goes.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The bootstrap listener: any broker of the cluster.
    Bootstrap,
    /// The listener of one broker node.
    Node(i32),
}

/// State shared by every connection.
pub struct Proxy<H: Hooks> {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Known brokers and their local listeners.
    pub nodes: NodeRegistry,
    /// What watches the traffic (the consumer watcher, or [`crate::route::NoHooks`]).
    pub hooks: Arc<H>,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// Every connection task, for draining on shutdown.
    pub tasks: TaskTracker,
    /// Bytes held whole at once, across connections (`proxy.buffer_budget_bytes`).
    pub budget: Budget,
    ready: AtomicBool,
    next_conn: AtomicU64,
    next_bootstrap: AtomicUsize,
    /// How to reach a broker (TCP, then TLS when configured); its SASL credentials are for
    /// the proxy's own connections only, never applied to a client's.
    upstream: Connector,
    pub(super) downstream_tls: Option<tokio_rustls::TlsAcceptor>,
    /// One permit per client connection served (`proxy.max_connections`).
    pub(super) connection_slots: Arc<Semaphore>,
    /// When a refused connection was last logged (ms since start), to log once a second.
    refusal_logged_ms: AtomicU64,
    started: std::time::Instant,
}

/// What [`Proxy::new`] returns: the shared state and the receiver of listener-open
/// requests that [`Proxy::run`] serves.
pub type NewProxy<H> = (Arc<Proxy<H>>, mpsc::UnboundedReceiver<OpenListener>);

impl<H: Hooks> Proxy<H> {
    /// Builds the shared state.
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        hooks: Arc<H>,
    ) -> Result<NewProxy<H>, ConfigError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let upstream = Connector::from_config(&config.upstream)?;
        let downstream_tls = match &config.proxy.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                crate::edge::tls::downstream_config(t)?,
            )),
            None => None,
        };
        let budget = Budget::new(
            config
                .proxy
                .buffer_budget_bytes
                .unwrap_or_else(budget::default_bytes),
        );
        let connection_slots = Arc::new(Semaphore::new(config.proxy.max_connections));
        let config = Arc::new(config);
        let port_config = config.clone();
        let nodes = NodeRegistry::new(
            config.proxy.advertised_host.clone(),
            move |id| port_config.node_port(id),
            tx,
        );
        let proxy = Proxy {
            config,
            metrics,
            nodes,
            hooks,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            budget,
            connection_slots,
            refusal_logged_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
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

    /// Closes a connection accepted past `proxy.max_connections`; logs at most once a second.
    pub(super) fn refuse(&self, socket: tokio::net::TcpStream, peer: std::net::SocketAddr) {
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
