//! Wiring: builds the proxy, its listeners and the admin server from a config. Used by the
//! binary and by tests that run a whole proxy in-process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use std::sync::Mutex;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::config::{Config, ConfigError};
use crate::detect::{Detector, DetectorLimits};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::topics::Topics;
use crate::watch::{ConsumerWatch, Diverter, Policy, Store};

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
    let watch = build_watch(&config, metrics.clone())?;
    let (proxy, open) = Proxy::new(config, metrics, Some(watch.clone()))?;
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
        if proxy.config.admin.token.is_none() && admin.is_some_and(|a| !a.ip().is_loopback()) {
            tracing::warn!(admin = ?admin,
                "the admin API listens beyond loopback without admin.token: anyone who reaches it can quarantine and release records");
        }
        let router = crate::admin::router(proxy.clone()).merge(crate::watch::admin_api::routes(
            watch.clone(),
            proxy.config.admin.token.clone(),
        ));
        tasks.push(tokio::spawn(crate::admin::serve(l, router, proxy.clone())));
    }
    tasks.push(tokio::spawn(crate::readiness::probe(proxy.clone())));
    spawn_watch_tasks(&watch, &proxy);
    Ok(App {
        proxy,
        listen,
        admin,
        tasks,
    })
}

fn build_watch(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<ConsumerWatch>, StartError> {
    let policy = Policy::compile(config.watch.clone())?;
    let pipelines = Arc::new(config.compile_pipelines()?);
    let instance = config
        .watch
        .instance
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "quarantine".into());
    let cluster = Arc::new(Cluster::from_config(&config.upstream, "quarantine")?);
    let store = Arc::new(Store::new(
        cluster.clone(),
        policy.config.state_topic.clone(),
    ));
    let detector = Arc::new(Mutex::new(Detector::new(DetectorLimits::default())));
    let topics = Arc::new(Topics::default());
    let diverter = Arc::new(Diverter::new(
        cluster.clone(),
        store.clone(),
        detector.clone(),
        topics.clone(),
        metrics.clone(),
        policy.clone(),
        instance,
    ));
    let fast_failover = policy.config.fast_failover.enabled;
    let watch = ConsumerWatch::new(
        policy, topics, detector, store, diverter, metrics, pipelines,
    );
    Ok(Arc::new(if fast_failover {
        watch.with_fast_failover(cluster)
    } else {
        watch
    }))
}

fn spawn_watch_tasks(watch: &Arc<ConsumerWatch>, proxy: &Arc<Proxy>) {
    let store = watch.store.clone();
    let metrics = proxy.metrics.clone();
    let shutdown = proxy.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = store.load() => {
                metrics.quarantined_offsets.set(store.count() as i64);
                tokio::select! {
                    _ = store.clone().tail(Duration::from_millis(250)) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            _ = shutdown.cancelled() => {}
        }
    });
    let w = watch.clone();
    let shutdown = proxy.shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = every.tick() => w.tick(),
                _ = shutdown.cancelled() => return,
            }
        }
    });
}
