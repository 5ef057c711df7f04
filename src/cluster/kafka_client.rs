//! The proxy's own Kafka client: one connection, one request at a time. Used for the
//! readiness probe, dead-letter writes, topic creation and the state topic; never for a
//! client's traffic, so its correlation ids live in their own space.
//!
//! [`KafkaClient::authenticate`] runs SASL on such a connection (SaslHandshake, then
//! SaslAuthenticate rounds carrying the messages of [`crate::cluster::sasl`]).

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::AsyncWriteExt;

use crate::cluster::sasl::{Authenticator, Credentials, SaslError, Step};
use crate::edge::frame::FrameReader;
use crate::edge::stream::{ReadHalf, Stream, WriteHalf};
use crate::protocol::wire;

/// Why a request of the proxy's own failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Framing failed.
    #[error("frame: {0}")]
    Frame(#[from] crate::edge::frame::FrameError),
    /// Encoding or decoding failed.
    #[error("protocol: {0}")]
    Wire(#[from] wire::WireError),
    /// The broker closed the connection.
    #[error("broker closed the connection")]
    Closed,
    /// The answer did not match the question.
    #[error("response correlation {got} does not match request {want}")]
    Correlation {
        /// Expected id.
        want: i32,
        /// Received id.
        got: i32,
    },
    /// The broker answered with an error code.
    #[error("{what}: broker error {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        /// What was attempted.
        what: String,
        /// Kafka error code.
        code: i16,
        /// Broker's message, if any.
        message: Option<String>,
    },
    /// The SASL exchange failed on the proxy's side (a malformed or unproven server).
    #[error("SASL authentication failed: {0}")]
    Sasl(#[from] SaslError),
}

/// UNSUPPORTED_SASL_MECHANISM.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// ILLEGAL_SASL_STATE.
const ILLEGAL_SASL_STATE: i16 = 34;
/// SASL_AUTHENTICATION_FAILED.
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// Most SaslAuthenticate rounds before giving up (SCRAM needs two, PLAIN one).
const MAX_SASL_ROUNDS: usize = 8;

impl ClientError {
    /// Whether this is an authentication failure (wrong credentials, mechanism not
    /// enabled, a server that cannot prove itself): retrying will not help.
    pub fn is_authentication(&self) -> bool {
        match self {
            ClientError::Sasl(_) => true,
            ClientError::Broker { code, .. } => matches!(
                *code,
                UNSUPPORTED_SASL_MECHANISM | ILLEGAL_SASL_STATE | SASL_AUTHENTICATION_FAILED
            ),
            _ => false,
        }
    }
}

/// One connection to one broker.
pub struct KafkaClient {
    reader: FrameReader<ReadHalf>,
    writer: WriteHalf,
    next: i32,
    client_id: StrBytes,
}

impl KafkaClient {
    /// Wraps an established stream.
    pub fn new(stream: Stream, client_id: &str) -> Self {
        let (r, w) = stream.split();
        KafkaClient {
            reader: FrameReader::new(r, 256 * 1024 * 1024),
            writer: w,
            next: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
        }
    }

    /// Sends one request at `version` and waits for its response.
    pub async fn send<R>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError>
    where
        R: Request + Encodable,
        R::Response: Decodable,
    {
        let api = ApiKey::try_from(R::KEY).map_err(|_| ClientError::Closed)?;
        let correlation = self.next;
        self.next = self.next.wrapping_add(1) & i32::MAX;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()));
        let frame: BytesMut = wire::encode_request(&header, request, api)?;
        self.writer.write_all(&frame).await?;
        let response = self.reader.read_frame().await?.ok_or(ClientError::Closed)?;
        let (h, body): (ResponseHeader, R::Response) =
            wire::decode_response(&response, api, version)?;
        if h.correlation_id != correlation {
            return Err(ClientError::Correlation {
                want: correlation,
                got: h.correlation_id,
            });
        }
        Ok(body)
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub async fn send_no_response<R: Request + Encodable>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| ClientError::Closed)?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.next)
            .with_client_id(Some(self.client_id.clone()));
        self.next = self.next.wrapping_add(1) & i32::MAX;
        let frame = wire::encode_request(&header, request, api)?;
        self.writer.write_all(&frame).await?;
        Ok(())
    }

    /// Authenticates this connection with `credentials`: SaslHandshake v1 naming the
    /// mechanism, then SaslAuthenticate at `authenticate_version` (0 to 2) until the
    /// mechanism is done. Call it right after connecting (ApiVersions before it is fine).
    pub async fn authenticate(
        &mut self,
        credentials: &Credentials,
        authenticate_version: i16,
    ) -> Result<(), ClientError> {
        let mechanism = credentials.mechanism;
        let what = || {
            format!(
                "SASL authentication failed ({mechanism} as {})",
                credentials.username
            )
        };
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mechanism.name()));
        let answer = self.send(&handshake, 1).await?;
        if answer.error_code != 0 {
            let message = if answer.error_code == UNSUPPORTED_SASL_MECHANISM {
                let enabled: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
                format!(
                    "the broker does not enable {mechanism}; it enables: {}",
                    if enabled.is_empty() {
                        "none".to_string()
                    } else {
                        enabled.join(", ")
                    }
                )
            } else {
                "SaslHandshake refused".to_string()
            };
            return Err(ClientError::Broker {
                what: what(),
                code: answer.error_code,
                message: Some(message),
            });
        }
        let (mut exchange, mut out) = Authenticator::start(credentials)?;
        for _ in 0..MAX_SASL_ROUNDS {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(out.into());
            let answer = self.send(&request, authenticate_version).await?;
            if answer.error_code != 0 {
                return Err(ClientError::Broker {
                    what: what(),
                    code: answer.error_code,
                    message: answer.error_message.map(|m| m.to_string()),
                });
            }
            match exchange.step(&answer.auth_bytes)? {
                Step::Done => return Ok(()),
                Step::Respond(next) => out = next,
            }
        }
        Err(ClientError::Broker {
            what: what(),
            code: ILLEGAL_SASL_STATE,
            message: Some(format!("no outcome after {MAX_SASL_ROUNDS} rounds")),
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateResponse, SaslHandshakeResponse,
    };
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::cluster::sasl::Mechanism;

    /// A broker that speaks SaslHandshake and SaslAuthenticate with PLAIN only, accepting
    /// `alice`/`s3cret`, and ApiVersions; it answers one connection.
    async fn plain_broker() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            loop {
                let mut size = [0u8; 4];
                if socket.read_exact(&mut size).await.is_err() {
                    return;
                }
                let mut frame = size.to_vec();
                frame.resize(4 + i32::from_be_bytes(size) as usize, 0);
                socket.read_exact(&mut frame[4..]).await.unwrap();
                let head = wire::request_head(&frame).unwrap();
                let mut body = Bytes::copy_from_slice(&frame[head.body_offset.unwrap()..]);
                let header = ResponseHeader::default().with_correlation_id(head.correlation_id);
                let api = head.api().unwrap();
                let v = head.api_version;
                let out = match api {
                    ApiKey::SaslHandshake => {
                        let req = SaslHandshakeRequest::decode(&mut body, v).unwrap();
                        let code = if req.mechanism.as_str() == "PLAIN" {
                            0
                        } else {
                            33
                        };
                        let res = SaslHandshakeResponse::default()
                            .with_error_code(code)
                            .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
                        wire::encode_response(&header, &res, api, v)
                    }
                    ApiKey::SaslAuthenticate => {
                        let req = SaslAuthenticateRequest::decode(&mut body, v).unwrap();
                        let res = if req.auth_bytes.as_ref() == b"\0alice\0s3cret" {
                            SaslAuthenticateResponse::default()
                        } else {
                            SaslAuthenticateResponse::default()
                                .with_error_code(58)
                                .with_error_message(Some(StrBytes::from_static_str(
                                    "Invalid username or password",
                                )))
                        };
                        wire::encode_response(&header, &res, api, v)
                    }
                    ApiKey::ApiVersions => {
                        wire::encode_response(&header, &ApiVersionsResponse::default(), api, v)
                    }
                    _ => return,
                };
                socket.write_all(&out.unwrap()).await.unwrap();
            }
        });
        port
    }

    async fn client(port: u16) -> KafkaClient {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        KafkaClient::new(Stream::Plain(tcp), "test")
    }

    #[tokio::test]
    async fn plain_credentials_are_accepted_at_every_authenticate_version() {
        for version in 0..=2 {
            let mut c = client(plain_broker().await).await;
            let creds = Credentials::new(Mechanism::Plain, "alice", "s3cret");
            c.authenticate(&creds, version).await.unwrap();
            // The connection is still usable, its correlation ids in step.
            let answer = c.send(&ApiVersionsRequest::default(), 2).await.unwrap();
            assert_eq!(answer.error_code, 0);
        }
    }

    #[tokio::test]
    async fn wrong_password_is_a_broker_error_with_its_message() {
        let mut c = client(plain_broker().await).await;
        let creds = Credentials::new(Mechanism::Plain, "alice", "wrong-pw");
        let err = c.authenticate(&creds, 1).await.unwrap_err();
        assert!(err.is_authentication());
        assert!(
            matches!(&err, ClientError::Broker { code: 58, message: Some(m), .. }
            if m == "Invalid username or password")
        );
        let text = err.to_string();
        assert!(text.contains("SASL authentication failed"), "{text}");
        assert!(text.contains("Invalid username or password"), "{text}");
        assert!(!text.contains("wrong-pw"), "{text}");
    }

    #[tokio::test]
    async fn unsupported_mechanism_lists_what_the_broker_enables() {
        let mut c = client(plain_broker().await).await;
        let creds = Credentials::new(Mechanism::ScramSha512, "alice", "s3cret");
        let err = c.authenticate(&creds, 1).await.unwrap_err();
        assert!(err.is_authentication());
        assert!(matches!(err, ClientError::Broker { code: 33, .. }));
        let text = err.to_string();
        assert!(text.contains("does not enable SCRAM-SHA-512"), "{text}");
        assert!(text.contains("enables: PLAIN"), "{text}");
    }

    #[test]
    fn only_sasl_failures_count_as_authentication() {
        assert!(!ClientError::Closed.is_authentication());
        let leader = ClientError::Broker {
            what: "produce".into(),
            code: 6,
            message: None,
        };
        assert!(!leader.is_authentication());
        assert!(ClientError::Sasl(SaslError::ServerSignature).is_authentication());
    }
}
