//! A real Kafka-compatible broker for integration tests: the tansu binary named by
//! `TANSU_BIN`, with in-memory storage, on a free loopback port. Tests skip (with a
//! message) when `TANSU_BIN` is not set, unless `QUARANTINE_TESTS_REQUIRE_REAL=1` (set by
//! `scripts/test.sh`) makes that a failure.

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
        let bin = tansu_bin()?;
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
    let python = std::env::var("QUARANTINE_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import confluent_kafka"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        assert!(
            !required(),
            "{python} with confluent-kafka is not available, and QUARANTINE_TESTS_REQUIRE_REAL \
             forbids skipping"
        );
        eprintln!("SKIPPED real-client check: {python} with confluent-kafka is not available");
        return None;
    }
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
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

/// Whether skipping is forbidden: `scripts/test.sh` sets `QUARANTINE_TESTS_REQUIRE_REAL=1`
/// (and `QUARANTINE_PYTHON` to its venv), so CI can never pass a real-broker or
/// real-client check by skipping it.
fn required() -> bool {
    std::env::var_os("QUARANTINE_TESTS_REQUIRE_REAL").is_some_and(|v| v == "1")
}

/// The broker binary from `TANSU_BIN`, or `None` (after printing why) when it is unset;
/// a failure instead when skipping is forbidden.
pub fn tansu_bin() -> Option<String> {
    let Ok(bin) = std::env::var("TANSU_BIN") else {
        assert!(
            !required(),
            "TANSU_BIN is not set, and QUARANTINE_TESTS_REQUIRE_REAL forbids skipping"
        );
        eprintln!(
            "SKIPPED: TANSU_BIN is not set; set it to a tansu broker binary to run \
             the real-broker tests"
        );
        return None;
    };
    Some(bin)
}
