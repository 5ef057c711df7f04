//! The proxy's own Kafka client: one connection, one request at a time. Used for the
//! readiness probe, dead-letter writes, topic creation and the state topic; never for a
//! client's traffic, so its correlation ids live in their own space.

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::AsyncWriteExt;

use crate::frame::FrameReader;
use crate::stream::{ReadHalf, Stream, WriteHalf};
use crate::wire;

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
    Frame(#[from] crate::frame::FrameError),
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
}
