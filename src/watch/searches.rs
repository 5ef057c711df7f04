//! The poison searches under way, as an operator reads them: `GET /quarantine/searches`
//! on the admin API and `quarantine searches` on the command line. One row per partition
//! that has failed and not been passed by its commit since: where the search stands,
//! which record it suspects, whether that record is being probed alone, and which sidecar
//! wrote the state last.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::detect::Phase;

use super::ConsumerWatch;

/// One partition's search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchView {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// `suspect`, `isolating`, `diverting`, or `normal` with failures still open.
    pub phase: String,
    /// The group's committed offset, when known.
    pub committed: Option<i64>,
    /// Failures whose records the commit has not passed.
    pub open_failures: usize,
    /// Highest offset believed good, in isolation.
    pub good_to: Option<i64>,
    /// Last offset the group may receive now, in isolation.
    pub window_end: Option<i64>,
    /// Highest offset that can still be the poison, in isolation.
    pub range_end: Option<i64>,
    /// Failures seen in isolation.
    pub failures: u32,
    /// The one record the search narrowed to.
    pub candidate: Option<i64>,
    /// Failures of the candidate while it was the only record out.
    pub confirmations: u32,
    /// The record being written to the dead-letter topic.
    pub diverting: Option<i64>,
    /// The group's other partitions are held back while this one's record is delivered
    /// alone.
    pub probing: bool,
    /// The sidecar that wrote this search state last.
    pub holder: String,
}

/// Every search this sidecar knows of, sorted by group, topic, partition.
pub fn views(watch: &ConsumerWatch) -> Vec<SearchView> {
    let me = watch.diverter.instance().to_string();
    let searches = watch
        .detector
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .searches();
    searches
        .into_iter()
        .map(|(key, st)| {
            let iso = st.isolation;
            SearchView {
                group: key.group,
                topic: key.topic,
                partition: key.partition,
                phase: match st.phase {
                    Phase::Normal => "normal",
                    Phase::Suspect => "suspect",
                    Phase::Isolating => "isolating",
                    Phase::Diverting => "diverting",
                }
                .to_string(),
                committed: st.committed,
                open_failures: st.open_failures,
                good_to: iso.map(|i| i.good_to),
                window_end: iso.map(|i| i.window_end),
                range_end: iso.map(|i| i.range_end),
                failures: iso.map_or(0, |i| i.failures),
                candidate: iso.and_then(|i| i.candidate),
                confirmations: iso.map_or(0, |i| i.confirmations),
                diverting: iso.and_then(|i| i.diverting),
                probing: st.probing,
                holder: st.owner.unwrap_or_else(|| me.clone()),
            }
        })
        .collect()
}

/// The searches as a table for a terminal.
pub fn table(rows: &[SearchView]) -> String {
    if rows.is_empty() {
        return "no poison search under way\n".to_string();
    }
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut lines = vec![[
        "GROUP",
        "TOPIC",
        "PART",
        "PHASE",
        "COMMITTED",
        "SUSPECTS",
        "WINDOW",
        "FAILURES",
        "CANDIDATE",
        "PROBING",
        "HOLDER",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let suspects = match (r.good_to, r.range_end) {
            (Some(g), Some(e)) => format!("{}..={e}", g.saturating_add(1)),
            _ => "-".to_string(),
        };
        let candidate = match (r.diverting, r.candidate) {
            (Some(d), _) => format!("{d} (diverting)"),
            (None, Some(c)) => format!("{c} ({} alone)", r.confirmations),
            _ => "-".to_string(),
        };
        lines.push(vec![
            r.group.clone(),
            r.topic.clone(),
            r.partition.to_string(),
            r.phase.clone(),
            opt(r.committed),
            suspects,
            opt(r.window_end),
            format!("{} ({} open)", r.failures, r.open_failures),
            candidate,
            if r.probing { "yes" } else { "no" }.to_string(),
            r.holder.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// Reads `GET /quarantine/searches` from a sidecar's admin API (`http://host:port`).
pub async fn fetch(admin: &str, token: Option<&str>) -> Result<Vec<SearchView>, String> {
    let uri: Uri = format!("{}/quarantine/searches", admin.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("admin URL {admin:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("admin URL {admin:?}: only http:// is served"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("admin URL {admin:?}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("admin API: {e}"))?;
    tokio::spawn(conn);
    let mut req = Request::get(uri.clone()).header(HOST, format!("{host}:{port}"));
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("admin request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("admin API: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), 64 << 20)
        .collect()
        .await
        .map_err(|e| format!("admin API body: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "admin API answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("admin API answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_the_search() {
        let row = SearchView {
            group: "orders-svc".into(),
            topic: "orders".into(),
            partition: 2,
            phase: "isolating".into(),
            committed: Some(180),
            open_failures: 3,
            good_to: Some(186),
            window_end: Some(187),
            range_end: Some(187),
            failures: 2,
            candidate: Some(187),
            confirmations: 0,
            diverting: None,
            probing: true,
            holder: "pod-1".into(),
        };
        let t = table(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("GROUP"));
        for cell in [
            "orders-svc",
            "isolating",
            "187..=187",
            "187 (0 alone)",
            "yes",
            "pod-1",
        ] {
            assert!(lines[1].contains(cell), "{cell} missing: {t}");
        }
        assert_eq!(table(&[]), "no poison search under way\n");
    }
}
