//! TLS against a real broker (tansu from `TANSU_BIN`; skipped with a message when unset).
//!
//! Certificates are made at test time (a CA and a server certificate for 127.0.0.1 and
//! localhost). tansu 0.6.0 cannot serve TLS itself (see `support/tls_tansu.rs`), so a
//! tokio-rustls relay terminates TLS in front of it and tansu advertises the relay.
//! Checked: a client on the proxy's plaintext side produces and fetches through an
//! upstream TLS connection (bootstrap and per-node); a proxy that trusts another CA refuses
//! the broker and counts `upstream_connect` errors; and TLS on the client side of the proxy
//! works with a verifying client while a plaintext client is refused.

#[path = "support/certs.rs"]
mod certs;
#[allow(dead_code)] // shared with other test crates
#[path = "support/proxy.rs"]
mod proxy_support;
#[allow(dead_code)] // shared with other test crates
#[path = "cluster_support/tansu.rs"]
mod tansu;
#[path = "support/tls_tansu.rs"]
mod tls_tansu;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use certs::TestPki;
use kafka_protocol::messages::ApiVersionsRequest;
use proxy_support::{client, error_count, free_node_port_base, metrics, start_proxy, PORTS};
use quarantine::app::App;
use quarantine::cluster::{Cluster, Connector};
use quarantine::config::{UpstreamConfig, UpstreamTls};
use quarantine::protocol::record::{Header, Record};
use tls_tansu::TlsBroker;

/// tansu's node id.
const NODE: i32 = 111;

/// Starts a proxy whose upstream is `broker` over TLS trusting `ca_file`; `downstream` adds
/// TLS on the client side with that certificate and key.
async fn proxy_for(broker: &TlsBroker, ca_file: &Path, downstream: Option<&TestPki>) -> (App, u16) {
    let base = free_node_port_base(&[NODE]);
    let client_tls = downstream
        .map(|pki| {
            format!(
                ", tls: {{cert_file: '{}', key_file: '{}'}}",
                pki.cert_file.display(),
                pki.key_file.display()
            )
        })
        .unwrap_or_default();
    let yaml = format!(
        "proxy: {{listen: '127.0.0.1:0', advertised_host: 127.0.0.1, node_port_base: {base}{client_tls}}}\n\
         upstream:\n  bootstrap_servers: ['127.0.0.1:{}']\n  connect_timeout_ms: 5000\n  \
         tls: {{enabled: true, ca_file: '{}'}}\n\
         admin: {{listen: '127.0.0.1:0'}}\n\
         watch: {{enabled: false}}\n",
        broker.tls_port,
        ca_file.display()
    );
    (start_proxy(&yaml).await, base)
}

fn records() -> Vec<Record> {
    (0..3)
        .map(|i| Record {
            offset: 0,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![Header {
                key: "trace".into(),
                value: Some(Bytes::from(format!("t{i}"))),
            }],
        })
        .collect()
}

/// Creates `orders`, produces three records and reads them back through `c`.
async fn produce_and_fetch(c: &Cluster) {
    c.create_topic("orders", 1, 1, &[])
        .await
        .expect("create topic");
    let sent = records();
    let first = c
        .produce("orders", 0, &sent, -1, Duration::from_secs(10))
        .await
        .expect("produce through the proxy");
    assert_eq!(first, 0);
    let got = c
        .read("orders", 0, 0, 100)
        .await
        .expect("fetch through the proxy");
    assert_eq!(got.len(), 3, "every record comes back");
    for (g, s) in got.iter().zip(&sent) {
        assert_eq!(
            (&g.key, &g.value, &g.headers),
            (&s.key, &s.value, &s.headers)
        );
    }
}

#[tokio::test]
async fn produces_and_fetches_through_upstream_tls() {
    let pki = TestPki::generate("quarantine test CA");
    let Some(broker) = TlsBroker::start(&pki.cert_file, &pki.key_file).await else {
        return;
    };
    let _ports = PORTS.lock().await;
    let (app, base) = proxy_for(&broker, &pki.ca_file, None).await;
    let c = Cluster::new(
        Connector::plain(Duration::from_secs(5)),
        vec![("127.0.0.1".into(), app.listen.port())],
        "tls-test",
    )
    .with_request_timeout(Duration::from_secs(15));
    produce_and_fetch(&c).await;

    let md = c.metadata(&["orders"]).await.expect("metadata");
    let addrs: Vec<(String, u16)> = md
        .brokers
        .values()
        .map(|b| (b.host.clone(), b.port))
        .collect();
    let node_port = u16::try_from(i32::from(base) + NODE).expect("fits");
    assert_eq!(addrs, vec![("127.0.0.1".to_string(), node_port)]);
    assert!(
        broker.handshakes() >= 2,
        "bootstrap and node connections went through TLS ({} handshakes)",
        broker.handshakes()
    );
    let text = metrics(&app).await;
    assert_eq!(error_count(&text, "upstream_connect"), 0, "{text}");

    let bootstrap = format!("127.0.0.1:{}", app.listen.port());
    // The proxy runs on this test's runtime: the blocking client runs off it.
    let consumed = tokio::task::spawn_blocking(move || {
        tansu::python(tansu::CONSUME_PY, &[&bootstrap, "orders", "0", "3"])
    })
    .await
    .expect("python runs");
    if let Some(out) = consumed {
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), 3, "confluent-kafka reads every record: {out}");
        assert_eq!(lines[2]["key"], "k2");
        assert_eq!(lines[2]["value"], "v2");
        assert_eq!(lines[2]["headers"], serde_json::json!([["trace", "t2"]]));
    }
}

#[tokio::test]
async fn a_broker_signed_by_another_ca_is_refused() {
    let pki = TestPki::generate("quarantine test CA");
    let stranger = TestPki::generate("some other CA");
    let Some(broker) = TlsBroker::start(&pki.cert_file, &pki.key_file).await else {
        return;
    };
    let _ports = PORTS.lock().await;
    let (app, _) = proxy_for(&broker, &stranger.ca_file, None).await;
    let before = error_count(&metrics(&app).await, "upstream_connect");

    let mut raw = client(app.listen.port(), "wrong-ca").await;
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        raw.send(&ApiVersionsRequest::default(), 3),
    )
    .await
    .expect("the proxy closes instead of hanging");
    assert!(
        answer.is_err(),
        "no answer without a trusted broker: {answer:?}"
    );

    let c = Cluster::new(
        Connector::plain(Duration::from_secs(5)),
        vec![("127.0.0.1".into(), app.listen.port())],
        "wrong-ca",
    )
    .with_retries(1)
    .with_request_timeout(Duration::from_secs(5));
    assert!(c.metadata(&[]).await.is_err(), "a client gets no metadata");
    assert!(
        c.read("orders", 0, 0, 10).await.is_err(),
        "a client gets no data"
    );

    let after = error_count(&metrics(&app).await, "upstream_connect");
    assert!(
        after >= before + 2,
        "each refused connection is counted (before {before}, after {after})"
    );
    assert_eq!(broker.handshakes(), 0, "no TLS session was ever completed");
    assert!(!app.proxy.is_ready(), "an unreachable cluster is not ready");
}

#[tokio::test]
async fn clients_connect_with_tls_and_plaintext_is_refused() {
    let pki = TestPki::generate("quarantine test CA");
    let Some(broker) = TlsBroker::start(&pki.cert_file, &pki.key_file).await else {
        return;
    };
    let _ports = PORTS.lock().await;
    let (app, base) = proxy_for(&broker, &pki.ca_file, Some(&pki)).await;
    let upstream = UpstreamConfig {
        bootstrap_servers: vec![format!("127.0.0.1:{}", app.listen.port())],
        connect_timeout_ms: 5000,
        tls: UpstreamTls {
            enabled: true,
            ca_file: Some(pki.ca_file.clone()),
            ..UpstreamTls::default()
        },
        sasl: None,
    };
    let c = Cluster::from_config(&upstream, "tls-app")
        .expect("client TLS config")
        .with_request_timeout(Duration::from_secs(15));
    produce_and_fetch(&c).await;
    let md = c.metadata(&[]).await.expect("metadata over TLS");
    let node_port = u16::try_from(i32::from(base) + NODE).expect("fits");
    assert_eq!(
        md.brokers.values().map(|b| b.port).collect::<Vec<_>>(),
        vec![node_port]
    );

    let before = error_count(&metrics(&app).await, "client_tls");
    let mut plain = client(app.listen.port(), "plaintext").await;
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        plain.send(&ApiVersionsRequest::default(), 3),
    )
    .await
    .expect("the proxy closes instead of hanging");
    assert!(
        answer.is_err(),
        "a plaintext client gets no answer: {answer:?}"
    );
    let after = error_count(&metrics(&app).await, "client_tls");
    assert!(after > before, "the failed handshake is counted");

    let stranger = TestPki::generate("some other CA");
    let distrustful = Cluster::from_config(
        &UpstreamConfig {
            tls: UpstreamTls {
                enabled: true,
                ca_file: Some(stranger.ca_file.clone()),
                ..UpstreamTls::default()
            },
            ..upstream.clone()
        },
        "distrustful",
    )
    .expect("client TLS config")
    .with_retries(1)
    .with_request_timeout(Duration::from_secs(5));
    assert!(
        distrustful.metadata(&[]).await.is_err(),
        "a client that does not trust the proxy's certificate does not connect"
    );
}
