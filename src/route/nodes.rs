//! Broker nodes and their addresses: which real broker each node id is, which local port
//! serves it, and the rewriting of every response that names a broker so that a client
//! only ever learns proxy addresses.
//!
//! Responses that name brokers: Metadata (`brokers`), FindCoordinator (one node before v4,
//! `coordinators` from v4), DescribeCluster (`brokers`), and the `node_endpoints` tagged
//! field of Produce v10+, Fetch v16+, ShareFetch and ShareAcknowledge. Each implements
//! [`NamesBrokers`].

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::messages::{
    DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

/// A message that carries broker addresses.
pub trait NamesBrokers {
    /// Calls `f(node_id, host, port)` for every broker address in the message; `f` may
    /// change host and port in place.
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32));
}

impl NamesBrokers for MetadataResponse {
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32)) {
        for b in &mut self.brokers {
            f(b.node_id.0, &mut b.host, &mut b.port);
        }
    }
}

impl NamesBrokers for FindCoordinatorResponse {
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32)) {
        // Before v4 the answer is the top-level node; from v4 the fields are absent (decoded
        // as defaults) and may not be set, so only `coordinators` is touched.
        if self.coordinators.is_empty() && self.node_id.0 >= 0 && !self.host.is_empty() {
            f(self.node_id.0, &mut self.host, &mut self.port);
        }
        for c in &mut self.coordinators {
            if c.node_id.0 >= 0 {
                f(c.node_id.0, &mut c.host, &mut c.port);
            }
        }
    }
}

impl NamesBrokers for DescribeClusterResponse {
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32)) {
        for b in &mut self.brokers {
            f(b.broker_id.0, &mut b.host, &mut b.port);
        }
    }
}

impl NamesBrokers for ProduceResponse {
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32)) {
        for e in &mut self.node_endpoints {
            f(e.node_id.0, &mut e.host, &mut e.port);
        }
    }
}

impl NamesBrokers for FetchResponse {
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32)) {
        for e in &mut self.node_endpoints {
            f(e.node_id.0, &mut e.host, &mut e.port);
        }
    }
}

impl NamesBrokers for ShareFetchResponse {
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32)) {
        for e in &mut self.node_endpoints {
            f(e.node_id.0, &mut e.host, &mut e.port);
        }
    }
}

impl NamesBrokers for ShareAcknowledgeResponse {
    fn for_each_broker(&mut self, f: &mut dyn FnMut(i32, &mut StrBytes, &mut i32)) {
        for e in &mut self.node_endpoints {
            f(e.node_id.0, &mut e.host, &mut e.port);
        }
    }
}

/// Lists the brokers a message names.
pub fn brokers_named(msg: &mut dyn NamesBrokers) -> Vec<(i32, String, u16)> {
    let mut out = Vec::new();
    msg.for_each_broker(&mut |node, host, port| {
        if let Ok(p) = u16::try_from(*port) {
            out.push((node, host.as_str().to_string(), p));
        }
    });
    out
}

/// Rewrites every broker address in a message to its proxy address. Returns how many
/// addresses were rewritten; a node without a mapping gets an unroutable address rather
/// than leaking the real one.
pub fn rewrite_brokers(msg: &mut dyn NamesBrokers, map: &HashMap<i32, (String, u16)>) -> usize {
    let mut n = 0;
    msg.for_each_broker(&mut |node, host, port| {
        match map.get(&node) {
            Some((h, p)) => {
                *host = StrBytes::from_string(h.clone());
                *port = i32::from(*p);
            }
            None => {
                *host = StrBytes::from_static_str("unmapped.invalid");
                *port = 1;
            }
        }
        n += 1;
    });
    n
}

/// A request to open the listener for a node.
pub struct OpenListener {
    /// Broker node id.
    pub node_id: i32,
    /// Local port to bind.
    pub port: u16,
    /// Answered once the listener is bound (or failed).
    pub done: oneshot::Sender<Result<(), String>>,
}

#[derive(Debug, Clone)]
struct Node {
    upstream: (String, u16),
    port: u16,
    listening: bool,
}

/// Known broker nodes; opens a listener for each new node id before any client hears of it.
pub struct NodeRegistry {
    nodes: Mutex<HashMap<i32, Node>>,
    advertised_host: String,
    port_of: Box<dyn Fn(i32) -> Option<u16> + Send + Sync>,
    opener: mpsc::UnboundedSender<OpenListener>,
}

impl NodeRegistry {
    /// A registry that advertises `advertised_host` and asks `opener` to bind new listeners.
    pub fn new(
        advertised_host: String,
        port_of: impl Fn(i32) -> Option<u16> + Send + Sync + 'static,
        opener: mpsc::UnboundedSender<OpenListener>,
    ) -> Self {
        NodeRegistry {
            nodes: Mutex::new(HashMap::new()),
            advertised_host,
            port_of: Box::new(port_of),
            opener,
        }
    }

    /// The real address of a node, if known.
    pub fn upstream_of(&self, node_id: i32) -> Option<(String, u16)> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.get(&node_id).map(|n| n.upstream.clone())
    }

    /// Every known node: id, real address, local port.
    pub fn snapshot(&self) -> Vec<(i32, (String, u16), u16)> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = nodes
            .iter()
            .map(|(id, n)| (*id, n.upstream.clone(), n.port))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// Known nodes whose local listener is not open (its bind failed): every partition
    /// those brokers lead is unreachable through this proxy until it opens. Sorted ids.
    pub fn unbound(&self) -> Vec<i32> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<i32> = nodes
            .iter()
            .filter(|(_, n)| !n.listening)
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
    }

    /// Records the real addresses of `brokers`, makes sure each has a listening local port,
    /// and returns the proxy address to advertise for each node.
    pub async fn learn(&self, brokers: &[(i32, String, u16)]) -> HashMap<i32, (String, u16)> {
        let mut to_open = Vec::new();
        let mut out = HashMap::new();
        {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            for (id, host, port) in brokers {
                let Some(local) = (self.port_of)(*id) else {
                    tracing::error!(node_id = id, "no local port fits this node id; check proxy.node_port_base / proxy.node_ports");
                    continue;
                };
                let node = nodes.entry(*id).or_insert_with(|| Node {
                    upstream: (host.clone(), *port),
                    port: local,
                    listening: false,
                });
                if node.upstream != (host.clone(), *port) {
                    tracing::info!(node_id = id, old = %format!("{}:{}", node.upstream.0, node.upstream.1), new = %format!("{host}:{port}"), "broker address changed");
                    node.upstream = (host.clone(), *port);
                }
                if !node.listening {
                    node.listening = true;
                    to_open.push((*id, local));
                }
                out.insert(*id, (self.advertised_host.clone(), local));
            }
        }
        for (node_id, port) in to_open {
            let (done, wait) = oneshot::channel();
            if self
                .opener
                .send(OpenListener {
                    node_id,
                    port,
                    done,
                })
                .is_err()
            {
                continue; // shutting down
            }
            match wait.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(node_id, port, error = %e, "cannot open the listener for broker node");
                    let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(n) = nodes.get_mut(&node_id) {
                        n.listening = false; // try again on the next answer that names it
                    }
                }
                Err(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::BrokerId;

    #[tokio::test]
    async fn learns_opens_once_and_rewrites() {
        let (tx, mut rx) = mpsc::unbounded_channel::<OpenListener>();
        let opened = tokio::spawn(async move {
            let mut ports = Vec::new();
            while let Some(req) = rx.recv().await {
                ports.push((req.node_id, req.port));
                let _ = req.done.send(Ok(()));
            }
            ports
        });
        let reg = NodeRegistry::new("proxy.local".into(), |id| u16::try_from(9000 + id).ok(), tx);
        let mut md = MetadataResponse::default();
        for id in [1, 2] {
            md.brokers.push(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(format!("kafka-{id}.internal")))
                    .with_port(9092),
            );
        }
        let named = brokers_named(&mut md);
        let map = reg.learn(&named).await;
        reg.learn(&named).await;
        assert_eq!(rewrite_brokers(&mut md, &map), 2);
        assert_eq!(md.brokers[1].host.as_str(), "proxy.local");
        assert_eq!(md.brokers[1].port, 9002);
        assert_eq!(reg.upstream_of(2), Some(("kafka-2.internal".into(), 9092)));

        let mut fc =
            FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
                .with_node_id(BrokerId(7))
                .with_host(StrBytes::from_static_str("kafka-7.internal"))
                .with_port(9093)]);
        rewrite_brokers(&mut fc, &map);
        assert_eq!(fc.coordinators[0].host.as_str(), "unmapped.invalid");
        // A v4+ answer must still encode: the absent top-level fields stay untouched.
        let frame = crate::protocol::wire::encode_response(
            &kafka_protocol::messages::ResponseHeader::default(),
            &fc,
            kafka_protocol::messages::ApiKey::FindCoordinator,
            6,
        );
        assert!(frame.is_ok(), "{frame:?}");
        drop(reg);
        assert_eq!(opened.await.unwrap(), vec![(1, 9001), (2, 9002)]);
    }
}
