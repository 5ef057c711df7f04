//! Readiness: the proxy is ready once the upstream cluster has answered a Metadata request,
//! whether a client's or the probe's own. With `upstream.sasl` set, the probe's connection
//! authenticates first (after ApiVersions), as every connection of the proxy's own does.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::MetadataRequest;

use crate::cluster::kafka_client::{ClientError, KafkaClient};
use crate::cluster::NodeConn;
use crate::route::hooks::Hooks;
use crate::route::nodes::brokers_named;
use crate::route::proxy::{Proxy, Target};

/// Asks the cluster for Metadata until it answers, then learns its brokers (opening their
/// listeners) and marks the proxy ready.
pub async fn probe<H: Hooks>(proxy: Arc<Proxy<H>>) {
    let mut backoff = Duration::from_millis(100);
    while !proxy.is_ready() {
        match ask(&proxy).await {
            Ok(()) => break,
            Err(e) => {
                let retry_in_ms = backoff.as_millis() as u64;
                match e {
                    // NodeConn::open has logged the failure at warn already.
                    Failure::Client(e) if e.is_authentication() => {
                        tracing::debug!(error = %e, retry_in_ms, "retrying SASL authentication");
                    }
                    e => {
                        tracing::warn!(error = %e, retry_in_ms, "upstream cluster not reachable yet");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = proxy.shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    retry_unbound(&proxy).await;
}

/// While a broker-node listener is not bound (its port was taken), asks for Metadata again
/// every few seconds: learning the brokers retries the bind, and `/ready` turns 200 once
/// every listener is open.
async fn retry_unbound<H: Hooks>(proxy: &Proxy<H>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = proxy.shutdown.cancelled() => return,
        }
        if !proxy.nodes.unbound().is_empty() {
            if let Err(e) = ask(proxy).await {
                tracing::debug!(error = %e, "metadata for the listener retry failed");
            }
        }
    }
}

/// The client id of the probe's connections.
const PROBE: &str = "quarantine-probe";

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// No connection.
    #[error("{0}")]
    Connect(String),
    /// A request (or the authentication) failed on the connection.
    #[error(transparent)]
    Client(#[from] ClientError),
}

async fn ask<H: Hooks>(proxy: &Proxy<H>) -> Result<(), Failure> {
    let stream = proxy
        .connect_upstream(Target::Bootstrap)
        .await
        .map_err(Failure::Connect)?;
    let mut client = match proxy.own_credentials() {
        None => KafkaClient::new(stream, PROBE),
        Some(credentials) => {
            let addr = "bootstrap server".to_string();
            NodeConn::open(stream, PROBE, addr, Some(credentials))
                .await?
                .client
        }
    };
    let mut md = client.send(&MetadataRequest::default(), 4).await?;
    let named = brokers_named(&mut md);
    proxy.nodes.learn(&named).await;
    proxy.mark_ready();
    Ok(())
}
