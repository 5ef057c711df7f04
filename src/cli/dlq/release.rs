//! `quarantine dlq replay --release`: once records are replayed, the quarantine entries of
//! their originals are stale. An entry is released (through the proxy's admin API) when
//! its DLQ copy is marked replayed in the ledger and its group has committed past the
//! original offset, so releasing it cannot make the group receive the original again.

use std::collections::BTreeMap;

use hyper::Method;
use serde_json::{json, Value};

use super::ledger::{Handled, Ledger};
use super::ToolError;
use crate::cli::admin::AdminArgs;
use crate::cli::state::{call, StateError};
use crate::cluster::Cluster;

/// What `--release` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Entries released.
    pub released: u64,
    /// Entries whose copy was replayed but whose group has not committed past the
    /// original yet: kept.
    pub kept: u64,
}

impl Released {
    /// JSON form.
    pub fn to_json(&self) -> Value {
        json!({"released": self.released, "kept_not_committed": self.kept})
    }
}

fn err(e: StateError) -> ToolError {
    match e {
        StateError::Usage(m) => ToolError::Usage(m),
        StateError::Failed(m) => ToolError::Failed(m),
    }
}

/// Releases the stale quarantine entries of the records of `dlq` that `ledger` marks
/// replayed.
pub async fn release_replayed(
    admin: &AdminArgs,
    cluster: &Cluster,
    dlq: &str,
    ledger: &Ledger,
) -> Result<Released, ToolError> {
    let body = call(admin, Method::GET, "/quarantine", None)
        .await
        .map_err(err)?;
    let entries: Vec<Value> = serde_json::from_str(&body)
        .map_err(|e| ToolError::Failed(format!("admin API answered no list: {e}")))?;
    let mut committed: BTreeMap<(String, String, i32), Option<i64>> = BTreeMap::new();
    let mut out = Released::default();
    for q in entries {
        let Some(copy) = q["dlq"].as_array() else {
            continue;
        };
        let (Some(t), Some(p), Some(o)) = (
            copy.first().and_then(Value::as_str),
            copy.get(1).and_then(Value::as_i64),
            copy.get(2).and_then(Value::as_i64),
        ) else {
            continue;
        };
        if t != dlq {
            continue;
        }
        let replayed = ledger
            .lookup(p as i32, o)
            .is_some_and(|m| matches!(m.how, Handled::Replayed { .. }));
        if !replayed {
            continue;
        }
        let (Some(group), Some(topic), Some(partition), Some(offset)) = (
            q["group"].as_str(),
            q["topic"].as_str(),
            q["partition"].as_i64(),
            q["offset"].as_i64(),
        ) else {
            continue;
        };
        let key = (group.to_string(), topic.to_string(), partition as i32);
        let c = match committed.get(&key) {
            Some(c) => *c,
            None => {
                let c = cluster
                    .committed_offsets(group, topic, &[partition as i32])
                    .await?
                    .get(&(partition as i32))
                    .copied();
                committed.insert(key, c);
                c
            }
        };
        if c.is_none_or(|c| c <= offset) {
            out.kept += 1;
            continue;
        }
        let path = format!(
            "/quarantine/{}/{}/{partition}/{offset}",
            enc(group),
            enc(topic)
        );
        call(admin, Method::DELETE, &path, None)
            .await
            .map_err(err)?;
        out.released += 1;
    }
    Ok(out)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
