//! Readiness: the proxy is ready once the upstream cluster has answered a Metadata request,
//! whether a client's or the probe's own.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::MetadataRequest;

use crate::kafka_client::KafkaClient;
use crate::nodes::brokers_named;
use crate::proxy::{Proxy, Target};

/// Asks the cluster for Metadata until it answers, then learns its brokers (opening their
/// listeners) and marks the proxy ready.
pub async fn probe(proxy: Arc<Proxy>) {
    let mut backoff = Duration::from_millis(100);
    while !proxy.is_ready() {
        match ask(&proxy).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "upstream cluster not reachable yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = proxy.shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn ask(proxy: &Proxy) -> Result<(), String> {
    let stream = proxy.connect_upstream(Target::Bootstrap).await?;
    let mut client = KafkaClient::new(stream, "quarantine-probe");
    let mut md = client
        .send(&MetadataRequest::default(), 4)
        .await
        .map_err(|e| e.to_string())?;
    let named = brokers_named(&mut md);
    proxy.nodes.learn(&named).await;
    proxy.mark_ready();
    Ok(())
}
