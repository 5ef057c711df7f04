//! Throughput of the record-batch codec per compression codec: scanning a fetched record
//! set, hiding one record per batch, and trimming inside the last batch.
//!
//! Workload: 10 batches of 500 records of about 1 KiB of JSON each. Run with
//! `cargo bench --bench batch_rewrite`; prints one table row per codec.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quarantine::protocol::record::{Header, Record};
use quarantine::protocol::record_batch::{
    encode_batch_framed, hide_offsets, scan, trim_after, BatchHeader, Compression, SnappyFraming,
};

const BATCHES: usize = 10;
const PER_BATCH: usize = 500;
const RECORD_BYTES: usize = 1024;
const MIN_TIME: Duration = Duration::from_millis(700);

/// A small deterministic generator so values differ like real traffic does.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn json_value(rng: &mut Rng, offset: i64) -> Bytes {
    const WORDS: [&str; 8] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut s = format!(
        "{{\"offset\":{offset},\"user\":\"u{}\",\"amount\":{}.{:02},\"tags\":[",
        rng.next() % 100_000,
        rng.next() % 10_000,
        rng.next() % 100
    );
    while s.len() < RECORD_BYTES - 40 {
        s.push_str(&format!(
            "\"{}-{}\",",
            WORDS[(rng.next() % 8) as usize],
            rng.next() % 1000
        ));
    }
    s.push_str(&format!(
        "\"end\"],\"ts\":{}}}",
        1_700_000_000_000u64 + rng.next() % 1000
    ));
    Bytes::from(s)
}

fn record_set(codec: Compression, framing: SnappyFraming) -> Bytes {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = BytesMut::new();
    for b in 0..BATCHES {
        let base = (b * PER_BATCH) as i64;
        let records: Vec<Record> = (0..PER_BATCH)
            .map(|i| {
                let offset = base + i as i64;
                Record {
                    offset,
                    timestamp: 1_700_000_000_000 + offset,
                    key: Some(Bytes::from(format!("order-{}", rng.next() % 50_000))),
                    value: Some(json_value(&mut rng, offset)),
                    headers: vec![Header::new("trace-id", format!("{:016x}", rng.next()))],
                }
            })
            .collect();
        let header = BatchHeader {
            base_offset: base,
            batch_length: 0,
            partition_leader_epoch: 3,
            magic: 2,
            crc: 0,
            attributes: i16::from(codec.id()),
            last_offset_delta: PER_BATCH as i32 - 1,
            base_timestamp: records[0].timestamp,
            max_timestamp: records[PER_BATCH - 1].timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: PER_BATCH as i32,
        };
        match encode_batch_framed(&header, &records, framing) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(e) => panic!("building the {codec} workload failed: {e}"),
        }
    }
    out.freeze()
}

/// Runs `f` until `MIN_TIME` has passed (at least 3 times); returns records per second.
fn measure(mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 3 || start.elapsed() < MIN_TIME {
        f();
        runs += 1;
    }
    (BATCHES * PER_BATCH) as f64 * f64::from(runs) / start.elapsed().as_secs_f64()
}

fn main() {
    let cases = [
        ("none", Compression::None, SnappyFraming::Xerial),
        ("gzip", Compression::Gzip, SnappyFraming::Xerial),
        (
            "snappy (xerial)",
            Compression::Snappy,
            SnappyFraming::Xerial,
        ),
        ("snappy (raw)", Compression::Snappy, SnappyFraming::Raw),
        ("lz4", Compression::Lz4, SnappyFraming::Xerial),
        ("zstd", Compression::Zstd, SnappyFraming::Xerial),
    ];
    println!(
        "{} batches x {} records of ~{} B; figures in records/s (higher is better)",
        BATCHES, PER_BATCH, RECORD_BYTES
    );
    println!(
        "{:<16} {:>10} {:>14} {:>20} {:>14}",
        "codec", "set bytes", "scan", "hide 1 per batch", "trim"
    );
    // One offset in the middle of every batch; trim halfway through the last batch.
    let hidden: Vec<i64> = (0..BATCHES)
        .map(|b| (b * PER_BATCH + PER_BATCH / 2) as i64)
        .collect();
    let trim_at = (BATCHES * PER_BATCH - PER_BATCH / 2) as i64;
    for (name, codec, framing) in cases {
        let set = record_set(codec, framing);
        let scan_rate = measure(|| {
            let view = scan(black_box(&set)).expect("scan");
            black_box(view.batches().map(|b| b.header.record_count).sum::<i32>());
        });
        let hide_rate = measure(|| {
            let out = hide_offsets(black_box(&set), &hidden).expect("hide");
            black_box(out.map(|b| b.len()));
        });
        let trim_rate = measure(|| {
            let out = trim_after(black_box(&set), trim_at).expect("trim");
            black_box(out.map(|b| b.len()));
        });
        println!(
            "{:<16} {:>10} {:>14.0} {:>20.0} {:>14.0}",
            name,
            set.len(),
            scan_rate,
            hide_rate,
            trim_rate
        );
    }
}
