//! Starting a whole proxy in-process for tests, and talking to it: free-port selection for
//! the per-node listeners, a typed Kafka client on a plain connection, and `/metrics`.

use std::time::Duration;

use quarantine::app::App;
use quarantine::cluster::kafka_client::KafkaClient;
use quarantine::config::Config;
use quarantine::edge::stream::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Tests that pick ports take this lock, so two of them never race for the same ports.
pub static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `node_port_base` such that `base + id` is free for every id in `ids`.
pub fn free_node_port_base(ids: &[i32]) -> u16 {
    for _ in 0..200 {
        let Ok(probe) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = probe.local_addr().map(|a| a.port()) else {
            continue;
        };
        drop(probe);
        let first = ids.iter().copied().min().unwrap_or(0);
        let Some(base) = i64::from(port).checked_sub(i64::from(first)) else {
            continue;
        };
        let all_free = ids.iter().all(|id| {
            u16::try_from(base + i64::from(*id))
                .ok()
                .filter(|p| *p > 1024)
                .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
                .unwrap_or(false)
        });
        if let (true, Ok(base)) = (all_free, u16::try_from(base)) {
            return base;
        }
    }
    panic!("no free node port range for {ids:?}");
}

/// Starts a proxy from a YAML config text.
pub async fn start_proxy(yaml: &str) -> App {
    let tree: serde_norway::Value = serde_norway::from_str(yaml).expect("test config is YAML");
    let config = Config::from_value(tree).expect("test config is valid");
    quarantine::app::start(config).await.expect("proxy starts")
}

/// A typed Kafka client on a plain connection to `127.0.0.1:port`.
pub async fn client(port: u16, client_id: &str) -> KafkaClient {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    KafkaClient::new(Stream::Plain(tcp), client_id)
}

/// The admin server's `/metrics` text.
pub async fn metrics(app: &App) -> String {
    let admin = app.admin.expect("admin server enabled");
    let mut s = TcpStream::connect(admin).await.expect("connect admin");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send GET");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("metrics answered in time")
        .expect("read metrics");
    out
}

/// The value of the `quarantine_errors_total{kind="KIND"}` counter (0 when absent).
pub fn error_count(metrics: &str, kind: &str) -> u64 {
    let prefix = format!("quarantine_errors_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
