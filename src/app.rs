//! Wiring: builds the proxy, its listeners and the admin server from a config. Used by the
//! binary and by tests that run a whole proxy in-process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A started proxy.
pub struct App {
    /// Shared proxy state.
    pub proxy: Arc<Proxy>,
    /// The bootstrap listener's bound address.
    pub listen: SocketAddr,
    /// The admin server's bound address, if enabled.
    pub admin: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl App {
    /// Waits until the proxy has shut down and drained.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds every listener and starts serving.
pub async fn start(config: Config) -> Result<App, StartError> {
    let metrics = Arc::new(Metrics::new());
    let bootstrap = TcpListener::bind(&config.proxy.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.proxy.listen.clone(),
            source,
        })?;
    let admin_listener = if config.admin.listen.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(&config.admin.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.admin.listen.clone(),
                    source,
                })?,
        )
    };
    let (proxy, open) = Proxy::new(config, metrics, None)?;
    let listen = bootstrap.local_addr().map_err(|source| StartError::Bind {
        addr: proxy.config.proxy.listen.clone(),
        source,
    })?;
    tracing::info!(listen = %listen, upstream = ?proxy.config.upstream.bootstrap_servers, "quarantine listening");
    let mut tasks = vec![tokio::spawn(proxy.clone().run(bootstrap, open))];
    let mut admin = None;
    if let Some(l) = admin_listener {
        admin = l.local_addr().ok();
        tracing::info!(admin = ?admin, "admin server listening");
        let router = crate::admin::router(proxy.clone());
        tasks.push(tokio::spawn(crate::admin::serve(l, router, proxy.clone())));
    }
    tasks.push(tokio::spawn(crate::readiness::probe(proxy.clone())));
    Ok(App {
        proxy,
        listen,
        admin,
        tasks,
    })
}
