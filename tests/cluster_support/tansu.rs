//! A real Kafka-compatible broker for integration tests: the tansu binary named by
//! `TANSU_BIN`, with in-memory storage, on a free loopback port. Tests skip (with a
//! message) when `TANSU_BIN` is not set.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker, killed on drop.
pub struct Broker {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Broker {
    /// Starts a broker on a free port, or `None` (after printing why) when `TANSU_BIN` is
    /// not set.
    pub fn start() -> Option<Broker> {
        let Ok(bin) = std::env::var("TANSU_BIN") else {
            eprintln!(
                "SKIPPED: TANSU_BIN is not set; set it to a tansu broker binary to run \
                 the real-broker tests"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Some(Broker::start_on(&bin, port))
    }

    /// Starts a broker on `port` and waits until it accepts connections.
    pub fn start_on(bin: &str, port: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker and waits for the process to end.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a Python snippet with confluent-kafka (a real client) and returns its stdout, or
/// `None` (after printing why) when python3 or confluent-kafka is missing.
pub fn python(script: &str, args: &[&str]) -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("SKIPPED real-client check: python3 with confluent-kafka is not available");
        return None;
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("utf-8 output"))
}

/// Python: consume a whole partition with confluent-kafka, print one JSON line per record
/// (key, value, headers as text, offset). Args: bootstrap topic partition count.
pub const CONSUME_PY: &str = r#"
import json, sys
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, partition, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False})
c.assign([TopicPartition(topic, partition, 0)])
got = []
while len(got) < count:
    m = c.poll(15)
    if m is None:
        break
    if m.error():
        raise SystemExit(str(m.error()))
    d = lambda b: None if b is None else b.decode()
    got.append({"offset": m.offset(), "key": d(m.key()), "value": d(m.value()),
                "headers": [[k, d(v)] for k, v in (m.headers() or [])]})
c.close()
for g in got:
    print(json.dumps(g))
"#;

/// Python: print `name partitions` for a topic as an admin client sees it.
pub const TOPIC_PY: &str = r#"
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=15)
t = md.topics.get(sys.argv[2])
print(sys.argv[2], -1 if t is None or t.error else len(t.partitions))
"#;
