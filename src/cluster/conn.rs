//! Connections of the proxy's own Kafka operations: how to reach a broker (plain or TLS,
//! as the upstream config says), and one connection per broker with the API versions the
//! broker announced, authenticated with `upstream.sasl` when that is set.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, SaslAuthenticateRequest};
use kafka_protocol::protocol::Request;
use tokio::net::TcpStream;

use crate::cluster::kafka_client::{ClientError, KafkaClient};
use crate::cluster::sasl::Credentials;
use crate::config::{ConfigError, UpstreamConfig, UpstreamTls};
use crate::edge::stream::{Stream, TlsStream};

/// Opens streams to brokers: TCP, then TLS when the upstream config asks for it; carries
/// the SASL credentials that [`NodeConn::open`] authenticates with.
#[derive(Clone)]
pub struct Connector {
    tls: Option<(Arc<rustls::ClientConfig>, UpstreamTls)>,
    timeout: Duration,
    sasl: Option<Arc<Credentials>>,
}

impl Connector {
    /// Plain TCP with a connect timeout, no SASL.
    pub fn plain(timeout: Duration) -> Self {
        Connector {
            tls: None,
            timeout,
            sasl: None,
        }
    }

    /// The same, authenticating every connection with `credentials`.
    pub fn with_sasl(mut self, credentials: Credentials) -> Self {
        self.sasl = Some(Arc::new(credentials));
        self
    }

    /// The SASL credentials connections authenticate with, if any.
    pub fn sasl(&self) -> Option<&Credentials> {
        self.sasl.as_deref()
    }

    /// As the proxy reaches the brokers: `upstream.tls`, `upstream.sasl` and
    /// `upstream.connect_timeout_ms`.
    pub fn from_config(upstream: &UpstreamConfig) -> Result<Self, ConfigError> {
        let tls = if upstream.tls.enabled {
            Some((
                crate::edge::tls::upstream_config(&upstream.tls)?,
                upstream.tls.clone(),
            ))
        } else {
            None
        };
        let sasl = match &upstream.sasl {
            Some(s) => Some(Arc::new(s.credentials()?)),
            None => None,
        };
        Ok(Connector {
            tls,
            timeout: Duration::from_millis(upstream.connect_timeout_ms),
            sasl,
        })
    }

    /// Connects to one broker.
    pub async fn connect(&self, host: &str, port: u16) -> Result<Stream, String> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| format!("connect to {host}:{port} timed out"))?
            .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((config, settings)) => {
                let name = crate::edge::tls::server_name(settings, host)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS to {host}:{port}: {e}"))?;
                Ok(Stream::Tls(Box::new(TlsStream::Client(tls))))
            }
        }
    }
}

/// The API versions a broker announced: key → (min, max).
#[derive(Debug, Clone, Default)]
pub struct Versions(HashMap<i16, (i16, i16)>);

impl Versions {
    /// From (key, min, max) triples.
    pub fn new(entries: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        Versions(
            entries
                .into_iter()
                .map(|(k, min, max)| (k, (min, max)))
                .collect(),
        )
    }

    /// The highest version of `api_key` in `ours` that the broker also supports.
    pub fn pick(&self, api_key: i16, ours: &RangeInclusive<i16>) -> Option<i16> {
        let (min, max) = self.0.get(&api_key)?;
        let hi = (*max).min(*ours.end());
        (hi >= *min && hi >= *ours.start()).then_some(hi)
    }
}

/// One open connection and what its broker supports.
pub struct NodeConn {
    /// The client, one request at a time.
    pub client: KafkaClient,
    /// API versions of the broker.
    pub versions: Versions,
    /// `host:port` of the broker, for error messages.
    pub addr: String,
}

impl NodeConn {
    /// Wraps a stream, asks the broker for its API versions (ApiVersions v2) and, with
    /// `sasl`, authenticates (SaslAuthenticate at the highest of v0 to v2 the broker
    /// announced). An authentication failure is logged here, once, at warn.
    pub async fn open(
        stream: Stream,
        client_id: &str,
        addr: String,
        sasl: Option<&Credentials>,
    ) -> Result<NodeConn, ClientError> {
        let mut client = KafkaClient::new(stream, client_id);
        let answer = client.send(&ApiVersionsRequest::default(), 2).await?;
        if answer.error_code != 0 {
            return Err(ClientError::Broker {
                what: "ApiVersions".into(),
                code: answer.error_code,
                message: None,
            });
        }
        let versions = Versions::new(
            answer
                .api_keys
                .iter()
                .map(|a| (a.api_key, a.min_version, a.max_version)),
        );
        if let Some(credentials) = sasl {
            let version = versions
                .pick(SaslAuthenticateRequest::KEY, &(0..=2))
                .unwrap_or(1);
            if let Err(e) = client.authenticate(credentials, version).await {
                if e.is_authentication() {
                    tracing::warn!(broker = %addr, "{e}");
                }
                return Err(e);
            }
        }
        Ok(NodeConn {
            client,
            versions,
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_common_version() {
        let v = Versions::new([(0, 0, 11), (1, 4, 17), (3, 0, 7)]);
        assert_eq!(v.pick(0, &(3..=9)), Some(9));
        assert_eq!(v.pick(1, &(4..=11)), Some(11));
        assert_eq!(v.pick(3, &(4..=12)), Some(7));
        assert_eq!(v.pick(3, &(8..=12)), None);
        assert_eq!(v.pick(2, &(1..=5)), None, "not announced");
        let old = Versions::new([(1, 12, 17)]);
        assert_eq!(old.pick(1, &(4..=11)), None, "broker too new for our range");
    }
}
