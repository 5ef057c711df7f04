//! A cached client for a Confluent-compatible schema registry
//! (`GET /schemas/ids/{id}` → `{"schema": "...", "schemaType": "JSON"|"AVRO"|...}`).
//!
//! The proxy calls it on the fetch path in two steps: an async [`RegistryClient::resolve`]
//! (through `Pipeline::prepare`) fetches the ids a batch uses that are not cached yet,
//! then the synchronous checks look ids up in the cache. Schemas are immutable per id, so
//! a found schema is kept for good; a failed lookup (unknown id, unreachable registry) is
//! remembered for `error_cache_ms` and then tried again.
//!
//! Outcomes for a record (see `wire_format`): a known id is checked; an id the registry
//! answered 404 for is the record's fault (SerializationException, diverted under
//! `errors.tolerance=all`); an unreachable or failing registry is not the record's fault,
//! so the record passes unverified and the outcome says so for counting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde::Deserialize;

use self::http::Endpoint;
use super::config::RegistryConfig;
use super::json_schema;

mod http;

/// Most failed lookups remembered at once; ids in records are producer-controlled.
const MAX_FAILED_ENTRIES: usize = 4096;
/// Most lookups in flight for one `resolve` call.
const MAX_CONCURRENT: usize = 8;
/// Largest allocation the Avro decoder may make for one length-prefixed item.
const AVRO_MAX_ALLOCATION: usize = 64 << 20;

/// A schema the registry knows, ready to check payloads with.
#[derive(Debug)]
pub(crate) enum RegisteredSchema {
    /// A JSON Schema.
    Json(jsonschema::Validator),
    /// An Avro schema.
    Avro(apache_avro::Schema),
    /// Another type (e.g. PROTOBUF): only the id is checked.
    Other,
    /// A schema that could not be compiled; records using it pass unverified.
    Unusable(String),
}

/// What the cache says about an id.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// Found.
    Known(Arc<RegisteredSchema>),
    /// The registry answered that it does not know the id.
    NotFound,
    /// The registry could not be asked or failed; the text says why.
    Unavailable(String),
    /// Never looked up (or the failure has expired and `resolve` was not called since).
    NotResolved,
}

#[derive(Debug)]
enum Entry {
    Known(Arc<RegisteredSchema>),
    NotFound { until: Instant },
    Unavailable { until: Instant, reason: String },
}

/// A schema-registry client with its cache. Share it (`Arc`) between pipelines using the
/// same registry.
#[derive(Debug)]
pub struct RegistryClient {
    endpoint: Endpoint,
    url: String,
    timeout: Duration,
    error_ttl: Duration,
    cache: Mutex<HashMap<u32, Entry>>,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

static AVRO_LIMIT: Once = Once::new();

impl RegistryClient {
    /// A client for `config`; fails on a bad URL.
    pub fn new(config: &RegistryConfig) -> Result<Self, String> {
        AVRO_LIMIT.call_once(|| {
            apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION);
        });
        Ok(RegistryClient {
            endpoint: Endpoint::parse(&config.url, config.basic_auth_user_info.as_deref())?,
            url: config.url.trim().to_string(),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            error_ttl: Duration::from_millis(config.error_cache_ms),
            cache: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        })
    }

    /// The registry URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// HTTP requests made so far (for metrics and tests).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent; keep using it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the cache says about `id` now.
    pub(crate) fn lookup(&self, id: u32) -> Lookup {
        let now = Instant::now();
        match self.cache().get(&id) {
            Some(Entry::Known(s)) => Lookup::Known(s.clone()),
            Some(Entry::NotFound { until }) if *until > now => Lookup::NotFound,
            Some(Entry::Unavailable { until, reason }) if *until > now => {
                Lookup::Unavailable(reason.clone())
            }
            _ => Lookup::NotResolved,
        }
    }

    /// Fetch every id of `ids` that is not cached (or whose failure has expired), at most
    /// a few at a time. Never fails: failures are cached and reported by [`Self::lookup`].
    pub async fn resolve(self: &Arc<Self>, ids: impl IntoIterator<Item = u32>) {
        let mut wanted: Vec<u32> = ids
            .into_iter()
            .filter(|id| matches!(self.lookup(*id), Lookup::NotResolved))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for chunk in wanted.chunks(MAX_CONCURRENT) {
            let mut tasks = tokio::task::JoinSet::new();
            for &id in chunk {
                let client = Arc::clone(self);
                tasks.spawn(async move {
                    let entry = client.fetch(id).await;
                    client.store(id, entry);
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    fn store(&self, id: u32, entry: Entry) {
        let mut cache = self.cache();
        let failed =
            |c: &HashMap<u32, Entry>| c.values().filter(|e| !matches!(e, Entry::Known(_))).count();
        if !matches!(entry, Entry::Known(_)) && failed(&cache) >= MAX_FAILED_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, e| match e {
                Entry::Known(_) => true,
                Entry::NotFound { until } | Entry::Unavailable { until, .. } => *until > now,
            });
            if failed(&cache) >= MAX_FAILED_ENTRIES {
                // Not remembered: the next batch using this id asks again.
                return;
            }
        }
        cache.insert(id, entry);
    }

    async fn fetch(&self, id: u32) -> Entry {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + self.error_ttl;
        let unavailable = |reason: String| {
            tracing::warn!(registry = %self.url, schema_id = id, %reason, "schema registry lookup failed");
            Entry::Unavailable { until, reason }
        };
        let resp = match self
            .endpoint
            .get(&format!("/schemas/ids/{id}"), self.timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => return unavailable(e),
        };
        match resp.status {
            200 => {}
            404 => return Entry::NotFound { until },
            s => return unavailable(format!("the registry answered HTTP {s}")),
        }
        let parsed: SchemaResponse = match serde_json::from_slice(&resp.body) {
            Ok(p) => p,
            Err(e) => return unavailable(format!("the registry's answer is not a schema: {e}")),
        };
        Entry::Known(Arc::new(compile(parsed)))
    }
}

fn compile(resp: SchemaResponse) -> RegisteredSchema {
    let schema_type = resp.schema_type.unwrap_or_else(|| "AVRO".to_string());
    if !resp.references.is_empty() {
        return RegisteredSchema::Unusable(format!(
            "the {schema_type} schema has references, which quarantine does not resolve"
        ));
    }
    match schema_type.as_str() {
        "AVRO" => match apache_avro::Schema::parse_str(&resp.schema) {
            Ok(s) => RegisteredSchema::Avro(s),
            Err(e) => RegisteredSchema::Unusable(format!("invalid Avro schema: {e}")),
        },
        "JSON" => match serde_json::from_str(&resp.schema) {
            Ok(v) => match json_schema::compile(&v) {
                Ok(validator) => RegisteredSchema::Json(validator),
                Err(e) => RegisteredSchema::Unusable(e),
            },
            Err(e) => RegisteredSchema::Unusable(format!("the JSON schema is not JSON: {e}")),
        },
        _ => RegisteredSchema::Other,
    }
}
