//! Protocol bytes become typed values here, at one edge: request headers and bounded
//! parsing of client requests ([`wire`]), the consumer requests the proxy reads
//! ([`consumer_requests`]), record batches ([`record_batch`]) and the owned records the
//! policy code works on ([`record`]).

pub mod consumer_requests;
pub mod fetch_scan;
pub mod record;
pub mod record_batch;
pub mod wire;
