//! ApiVersions: the proxy tells clients only the versions it can decode.
//!
//! Each API's range is intersected with the range the `kafka-protocol` crate knows; APIs
//! the crate does not know are removed, since the proxy could not vouch for them. A client
//! that asked for an ApiVersions version the broker does not support gets a v0 answer with
//! `UNSUPPORTED_VERSION`; that answer is decoded and capped as v0, or passed on as it came
//! when it is not a v0 body: some brokers (librdkafka's mock cluster) write it in the
//! flexible format of the version asked, and clients read it either way.

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::edge::frame::PREFIX;
use crate::protocol::wire::{decode_response, encode_response, WireError};

/// Kafka's UNSUPPORTED_VERSION error code.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// Caps every API range in place; returns how many ranges were narrowed or removed.
pub fn cap(resp: &mut ApiVersionsResponse) -> usize {
    let before = resp.api_keys.clone();
    resp.api_keys
        .retain_mut(|v| match ApiKey::try_from(v.api_key) {
            Ok(api) => {
                let known = api.valid_versions();
                v.min_version = v.min_version.max(known.min);
                v.max_version = v.max_version.min(known.max).min(own_max(api));
                v.min_version <= v.max_version
            }
            Err(()) => false,
        });
    before.len() - resp.api_keys.len()
        + before
            .iter()
            .zip(&resp.api_keys)
            .filter(|(a, b)| a.max_version != b.max_version || a.min_version != b.min_version)
            .count()
}

/// Versions the proxy's own parsers stop at, below what the crate knows: OffsetCommit v10
/// names topics by id, which `consumer_requests` does not read.
fn own_max(api: ApiKey) -> i16 {
    match api {
        ApiKey::OffsetCommit => 9,
        _ => i16::MAX,
    }
}

/// Rewrites an ApiVersions response frame that answered a request of `version`.
pub fn rewrite(frame: &[u8], version: i16) -> Result<BytesMut, WireError> {
    // The error code is the first body field in every version; an UNSUPPORTED_VERSION
    // answer is always encoded as v0 (header v0 too, as every ApiVersions response).
    let error = frame
        .get(PREFIX + 4..PREFIX + 6)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .unwrap_or(0);
    if error == UNSUPPORTED_VERSION {
        // It names the ApiVersions versions to retry with; the retry's answer is capped.
        return match decode_response::<ApiVersionsResponse>(frame, ApiKey::ApiVersions, 0) {
            Ok((header, mut body)) => {
                cap(&mut body);
                encode_response(&header, &body, ApiKey::ApiVersions, 0)
            }
            Err(e) => {
                tracing::debug!(error = %e, version, "ApiVersions UNSUPPORTED_VERSION answer is not a v0 body; passed on as it is");
                Ok(BytesMut::from(frame))
            }
        };
    }
    let (header, mut body) =
        decode_response::<ApiVersionsResponse>(frame, ApiKey::ApiVersions, version)?;
    cap(&mut body);
    encode_response(&header, &body, ApiKey::ApiVersions, version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ResponseHeader;

    fn range(key: i16, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(key)
            .with_min_version(min)
            .with_max_version(max)
    }

    #[test]
    fn caps_to_decodable_and_drops_unknown() {
        let mut resp = ApiVersionsResponse::default().with_api_keys(vec![
            range(ApiKey::Fetch as i16, 0, 99),
            range(ApiKey::Metadata as i16, 0, 5),
            range(31999, 0, 3),
        ]);
        cap(&mut resp);
        let fetch = ApiKey::Fetch.valid_versions();
        assert_eq!(resp.api_keys.len(), 2);
        assert_eq!(resp.api_keys[0].max_version, fetch.max);
        assert_eq!(resp.api_keys[0].min_version, fetch.min);
        assert_eq!(resp.api_keys[1].max_version, 5);
    }

    #[test]
    fn unsupported_version_answer_is_read_as_v0() {
        let body = ApiVersionsResponse::default()
            .with_error_code(UNSUPPORTED_VERSION)
            .with_api_keys(vec![range(18, 0, 3), range(31999, 0, 1)]);
        let header = ResponseHeader::default().with_correlation_id(9);
        let frame = encode_response(&header, &body, ApiKey::ApiVersions, 0).unwrap();
        let out = rewrite(&frame, 4).unwrap();
        let (h, b) = decode_response::<ApiVersionsResponse>(&out, ApiKey::ApiVersions, 0).unwrap();
        assert_eq!(h.correlation_id, 9);
        assert_eq!(b.error_code, UNSUPPORTED_VERSION);
        assert_eq!(b.api_keys.len(), 1);
    }

    #[test]
    fn unsupported_version_answer_in_another_format_passes_unchanged() {
        // librdkafka's mock cluster answers ApiVersions v3 (it speaks v0-v2) like this:
        // correlation id, UNSUPPORTED_VERSION, then its supported range in a flexible form.
        let mut frame = BytesMut::new();
        let payload: &[u8] = &[
            0, 0, 0, 7, 0, 0x23, 0x01, 0, 0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0,
        ];
        frame.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        frame.extend_from_slice(payload);
        let out = rewrite(&frame, 3).unwrap();
        assert_eq!(&out[..], &frame[..]);
    }
}
