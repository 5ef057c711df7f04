//! `quarantine inject`: adds the quarantine sidecar to Kubernetes workloads, like
//! `linkerd inject`. Reads YAML (one or more documents; Deployments, StatefulSets,
//! DaemonSets, `List`s of them; anything else passes through untouched) and writes it back
//! with, in each pod template:
//!
//! - the `quarantine` container: a native sidecar (an init container with
//!   `restartPolicy: Always`, Kubernetes 1.29+) by default, or a classic sidecar with a
//!   preStop sleep (`--classic`); probes, resources, a locked-down security context and the
//!   admin token from an optional Secret, as in `deploy/kubernetes/plain/`;
//! - the ConfigMap volume it reads its config from;
//! - the pod label `quarantine/sidecar: "true"` (the PodMonitor selects it) and a
//!   termination grace period that covers the proxy's drain;
//! - the application's `bootstrap.servers`, where a container sets it through a known
//!   environment variable (`KAFKA_BOOTSTRAP_SERVERS`, `SPRING_KAFKA_BOOTSTRAP_SERVERS`, ...
//!   or `--bootstrap-env NAME`), pointed at the sidecar; the original value (or its
//!   `valueFrom`) becomes the sidecar's `QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS`.
//!
//! A pod template that already has a `quarantine` container is left as it is, so injecting
//! twice changes nothing. YAML comments are not kept (the output is re-serialised).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

/// Exit code for unreadable or invalid input (`EX_DATAERR`).
const EX_DATAERR: u8 = 65;

/// Environment variables applications commonly read `bootstrap.servers` from.
pub const KNOWN_BOOTSTRAP_VARS: [&str; 9] = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "BOOTSTRAP_SERVERS",
    "KAFKA_BROKERS",
    "KAFKA_BROKER_LIST",
    "KAFKA_BOOTSTRAP",
    "SPRING_KAFKA_BOOTSTRAP_SERVERS",
    "SPRING_KAFKA_CONSUMER_BOOTSTRAP_SERVERS",
    "SPRING_KAFKA_PRODUCER_BOOTSTRAP_SERVERS",
    "SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS",
];

/// Arguments of `quarantine inject`.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// YAML files to read; `-` or none: standard input.
    pub files: Vec<PathBuf>,
    /// A classic sidecar (a regular container with a preStop sleep) instead of a native one.
    #[arg(long)]
    pub classic: bool,
    /// The sidecar image.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// The ConfigMap holding quarantine.yaml.
    #[arg(long, default_value = "quarantine-config")]
    pub config_map: String,
    /// The Secret holding the admin token (key `token`; optional at runtime).
    #[arg(long, default_value = "quarantine-admin")]
    pub token_secret: String,
    /// Another environment variable the application reads bootstrap.servers from (repeatable).
    #[arg(long = "bootstrap-env", value_name = "NAME")]
    pub bootstrap_env: Vec<String>,
    /// The address the application is pointed at (the sidecar's proxy.listen).
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap: String,
    /// Seconds the application needs to shut down (commit, leave the group): the classic
    /// preStop sleep, and part of the termination grace period.
    #[arg(long, default_value_t = 30)]
    pub app_shutdown_seconds: u32,
}

/// The image `scripts/build-image.sh` builds and tags.
pub const DEFAULT_IMAGE: &str = concat!("quarantine:", env!("CARGO_PKG_VERSION"));

/// The proxy's own drain after SIGTERM (the shipped config's proxy.shutdown_grace_ms), s.
const PROXY_DRAIN_SECONDS: u32 = 10;

/// The sidecar container, as in deploy/kubernetes/plain/deployment-native-sidecar.yaml.
const SIDECAR: &str = r#"
name: quarantine
image: IMAGE
args: ["run", "--config", "/etc/quarantine/quarantine.yaml"]
env:
  - name: QUARANTINE__ADMIN__TOKEN
    valueFrom:
      secretKeyRef:
        name: SECRET
        key: token
        optional: true
ports:
  - name: q-admin
    containerPort: 9644
    protocol: TCP
startupProbe:
  httpGet:
    path: /live
    port: q-admin
  periodSeconds: 1
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /live
    port: q-admin
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /ready
    port: q-admin
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
resources:
  requests:
    cpu: 100m
    memory: 64Mi
  limits:
    memory: 256Mi
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
volumeMounts:
  - name: quarantine-config
    mountPath: /etc/quarantine
    readOnly: true
"#;

/// Why a document could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// Not YAML.
    #[error("{source_name}: document {doc}: {message}")]
    Parse {
        /// File name or `<stdin>`.
        source_name: String,
        /// 1-based document number.
        doc: usize,
        /// The parser's message.
        message: String,
    },
    /// A workload that cannot be injected as it is.
    #[error("{source_name}: {kind}/{name}: {message}")]
    Workload {
        /// File name or `<stdin>`.
        source_name: String,
        /// Kind.
        kind: String,
        /// metadata.name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// What happened to one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar was added.
    Injected,
    /// It already had one: left unchanged.
    AlreadyInjected,
}

fn key(k: &str) -> Value {
    Value::String(k.to_string())
}

fn map_at<'a>(m: &'a mut Mapping, k: &str) -> &'a mut Mapping {
    let v = m
        .entry(key(k))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    match v {
        Value::Mapping(m) => m,
        _ => unreachable!("just made a mapping"),
    }
}

fn seq_at<'a>(m: &'a mut Mapping, k: &str) -> &'a mut Vec<Value> {
    let v = m
        .entry(key(k))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if !v.is_sequence() {
        *v = Value::Sequence(Vec::new());
    }
    match v {
        Value::Sequence(s) => s,
        _ => unreachable!("just made a sequence"),
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// The sidecar container for `args`.
pub fn sidecar(args: &InjectArgs) -> Value {
    let mut c: Value = serde_norway::from_str(SIDECAR).expect("the sidecar template parses");
    c["image"] = Value::String(args.image.clone());
    c["env"][0]["valueFrom"]["secretKeyRef"]["name"] = Value::String(args.token_secret.clone());
    if let Value::Mapping(m) = &mut c {
        if args.classic {
            let sleep: Value = serde_norway::from_str(&format!(
                "preStop: {{sleep: {{seconds: {}}}}}",
                args.app_shutdown_seconds
            ))
            .expect("the preStop template parses");
            m.insert(key("lifecycle"), sleep);
        } else {
            // Right after `image`, where the plain manifests have it.
            let mut out = Mapping::new();
            for (k, v) in std::mem::take(m) {
                let after_image = k.as_str() == Some("image");
                out.insert(k, v);
                if after_image {
                    out.insert(key("restartPolicy"), key("Always"));
                }
            }
            *m = out;
        }
    }
    c
}

fn has_quarantine(list: Option<&Value>) -> bool {
    list.and_then(Value::as_sequence)
        .is_some_and(|s| s.iter().any(|c| str_of(c, "name") == Some("quarantine")))
}

/// Adds the sidecar to one pod spec (`spec.template.spec` of a workload).
fn inject_pod(
    pod_meta: &mut Mapping,
    pod: &mut Mapping,
    args: &InjectArgs,
) -> Result<Outcome, String> {
    if has_quarantine(pod.get("containers")) || has_quarantine(pod.get("initContainers")) {
        return Ok(Outcome::AlreadyInjected);
    }
    let mut names: Vec<String> = KNOWN_BOOTSTRAP_VARS.iter().map(|s| s.to_string()).collect();
    names.extend(args.bootstrap_env.iter().cloned());
    // Rewire the application containers' bootstrap variables; remember the original.
    let mut upstream: Option<(String, Value)> = None; // (where, env entry minus name)
    for list in ["containers", "initContainers"] {
        let Some(Value::Sequence(containers)) = pod.get_mut(list) else {
            continue;
        };
        for c in containers.iter_mut() {
            let cname = str_of(c, "name").unwrap_or("?").to_string();
            let Some(Value::Sequence(env)) = c.get_mut("env") else {
                continue;
            };
            for e in env.iter_mut() {
                let Some(var) = str_of(e, "name").map(String::from) else {
                    continue;
                };
                if !names.contains(&var) {
                    continue;
                }
                let Value::Mapping(entry) = e else { continue };
                let mut original = entry.clone();
                original.remove("name");
                if original.get("value").and_then(Value::as_str) == Some(args.bootstrap.as_str()) {
                    continue; // already pointed at the sidecar
                }
                let original = Value::Mapping(original);
                match &upstream {
                    Some((first, value)) if *value != original => {
                        return Err(format!(
                            "containers disagree on the Kafka cluster: {first} and {cname}/{var}; inject them separately or give the sidecar QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS by hand"
                        ));
                    }
                    Some(_) => {}
                    None => upstream = Some((format!("{cname}/{var}"), original)),
                }
                entry.remove("valueFrom");
                entry.insert(key("value"), Value::String(args.bootstrap.clone()));
            }
        }
    }
    let mut container = sidecar(args);
    if let Some((_, original)) = upstream {
        let mut entry = Mapping::new();
        entry.insert(key("name"), key("QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS"));
        if let Value::Mapping(o) = original {
            for (k, v) in o {
                entry.insert(k, v);
            }
        }
        if let Some(Value::Sequence(env)) = container.get_mut("env") {
            env.push(Value::Mapping(entry));
        }
    }
    if args.classic {
        seq_at(pod, "containers").push(container);
    } else {
        // First, so that the application's own init containers can reach Kafka too.
        seq_at(pod, "initContainers").insert(0, container);
    }
    let volumes = seq_at(pod, "volumes");
    if !volumes
        .iter()
        .any(|v| str_of(v, "name") == Some("quarantine-config"))
    {
        let v: Value = serde_norway::from_str(&format!(
            "name: quarantine-config\nconfigMap:\n  name: {}",
            serde_json::to_string(&args.config_map).unwrap_or_default()
        ))
        .map_err(|e| format!("--config-map: {e}"))?;
        volumes.push(v);
    }
    let grace = args.app_shutdown_seconds + PROXY_DRAIN_SECONDS + 5;
    let current = pod
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    if current < u64::from(grace) {
        pod.insert(key("terminationGracePeriodSeconds"), Value::from(grace));
    }
    map_at(pod_meta, "labels").insert(key("quarantine/sidecar"), key("true"));
    Ok(Outcome::Injected)
}

/// Injects one document in place (recursing into `List` items); returns what happened to
/// each workload found, as (kind/name, outcome).
pub fn inject_doc(
    doc: &mut Value,
    args: &InjectArgs,
) -> Result<Vec<(String, Outcome)>, (String, String, String)> {
    let kind = str_of(doc, "kind").unwrap_or_default().to_string();
    let name = doc
        .get("metadata")
        .and_then(|m| str_of(m, "name"))
        .unwrap_or("?")
        .to_string();
    let mut out = Vec::new();
    match kind.as_str() {
        "List" | "DeploymentList" | "StatefulSetList" | "DaemonSetList" => {
            if let Some(Value::Sequence(items)) = doc.get_mut("items") {
                for item in items {
                    out.extend(inject_doc(item, args)?);
                }
            }
        }
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            let Some(Value::Mapping(spec)) = doc.get_mut("spec") else {
                return Err((kind, name, "has no spec".into()));
            };
            let template = map_at(spec, "template");
            let mut meta = template
                .remove("metadata")
                .and_then(|m| match m {
                    Value::Mapping(m) => Some(m),
                    _ => None,
                })
                .unwrap_or_default();
            let result = match template.get_mut("spec") {
                Some(Value::Mapping(pod)) => inject_pod(&mut meta, pod, args),
                _ => Err("has no spec.template.spec".into()),
            };
            // Keep metadata before spec, as written.
            let pod = template.remove("spec");
            template.insert(key("metadata"), Value::Mapping(meta));
            if let Some(pod) = pod {
                template.insert(key("spec"), pod);
            }
            let outcome = result.map_err(|m| (kind.clone(), name.clone(), m))?;
            out.push((format!("{}/{}", kind.to_lowercase(), name), outcome));
        }
        _ => {}
    }
    Ok(out)
}

/// Injects every document of `text`; returns the YAML to print and the per-workload report.
pub fn inject_text(
    text: &str,
    source_name: &str,
    args: &InjectArgs,
) -> Result<(String, Vec<(String, Outcome)>), InjectError> {
    let mut out = String::new();
    let mut report = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let mut doc = Value::deserialize(de).map_err(|e| InjectError::Parse {
            source_name: source_name.to_string(),
            doc: i + 1,
            message: e.to_string(),
        })?;
        if doc.is_null() {
            continue; // an empty document (`---` at the end)
        }
        report.extend(inject_doc(&mut doc, args).map_err(|(kind, name, message)| {
            InjectError::Workload {
                source_name: source_name.to_string(),
                kind,
                name,
                message,
            }
        })?);
        let yaml = serde_norway::to_string(&doc).map_err(|e| InjectError::Parse {
            source_name: source_name.to_string(),
            doc: i + 1,
            message: e.to_string(),
        })?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok((out, report))
}

/// `quarantine inject`: prints the injected YAML on stdout, one line per workload on
/// stderr; 0 on success, 65 on unreadable or invalid input (nothing printed then).
pub fn run_cli(args: InjectArgs) -> ExitCode {
    use std::io::Write;
    let sources: Vec<PathBuf> = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    let mut output = String::new();
    let mut lines = Vec::new();
    for path in &sources {
        let (name, text) = if path.as_os_str() == "-" {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                crate::ops::logging::stderr_line(&format!("quarantine inject: <stdin>: {e}"));
                return ExitCode::from(EX_DATAERR);
            }
            ("<stdin>".to_string(), text)
        } else {
            match std::fs::read_to_string(path) {
                Ok(t) => (path.display().to_string(), t),
                Err(e) => {
                    crate::ops::logging::stderr_line(&format!(
                        "quarantine inject: {}: {e}",
                        path.display()
                    ));
                    return ExitCode::from(EX_DATAERR);
                }
            }
        };
        match inject_text(&text, &name, &args) {
            Ok((yaml, report)) => {
                output.push_str(&yaml);
                for (what, outcome) in report {
                    lines.push(match outcome {
                        Outcome::Injected => format!("{what} injected"),
                        Outcome::AlreadyInjected => format!("{what} already injected: unchanged"),
                    });
                }
            }
            Err(e) => {
                crate::ops::logging::stderr_line(&format!("quarantine inject: {e}"));
                return ExitCode::from(EX_DATAERR);
            }
        }
    }
    // A closed pipe (`| head`) ends the output quietly.
    let _ = std::io::stdout().write_all(output.as_bytes());
    for line in lines {
        crate::ops::logging::stderr_line(&line);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(classic: bool) -> InjectArgs {
        InjectArgs {
            files: vec![],
            classic,
            image: DEFAULT_IMAGE.into(),
            config_map: "quarantine-config".into(),
            token_secret: "quarantine-admin".into(),
            bootstrap_env: vec![],
            bootstrap: "localhost:9092".into(),
            app_shutdown_seconds: 30,
        }
    }

    const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders}
spec:
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec:
      containers:
        - name: app
          image: example/orders:1
          env:
            - {name: KAFKA_BOOTSTRAP_SERVERS, value: "kafka:9092"}
            - {name: OTHER, value: x}
"#;

    #[test]
    fn native_sidecar_rewires_the_app_and_is_idempotent() {
        let (once, report) = inject_text(APP, "t", &args(false)).unwrap();
        assert_eq!(
            report,
            vec![("deployment/orders".into(), Outcome::Injected)]
        );
        let doc: Value = serde_norway::from_str(&once).unwrap();
        let pod = &doc["spec"]["template"]["spec"];
        let side = &pod["initContainers"][0];
        assert_eq!(side["name"], key("quarantine"));
        assert_eq!(side["restartPolicy"], key("Always"));
        assert_eq!(
            side["env"][1]["name"],
            key("QUARANTINE__UPSTREAM__BOOTSTRAP_SERVERS")
        );
        assert_eq!(side["env"][1]["value"], key("kafka:9092"));
        assert_eq!(
            pod["containers"][0]["env"][0]["value"],
            key("localhost:9092")
        );
        assert_eq!(pod["containers"][0]["env"][1]["value"], key("x"));
        assert_eq!(
            pod["volumes"][0]["configMap"]["name"],
            key("quarantine-config")
        );
        assert_eq!(pod["terminationGracePeriodSeconds"], Value::from(45));
        assert_eq!(
            doc["spec"]["template"]["metadata"]["labels"]["quarantine/sidecar"],
            key("true")
        );
        let (twice, report) = inject_text(&once, "t", &args(false)).unwrap();
        assert_eq!(twice, once);
        assert_eq!(report[0].1, Outcome::AlreadyInjected);
    }

    #[test]
    fn classic_sidecar_and_value_from() {
        let app = APP.replace(
            r#"{name: KAFKA_BOOTSTRAP_SERVERS, value: "kafka:9092"}"#,
            "{name: KAFKA_BOOTSTRAP_SERVERS, valueFrom: {configMapKeyRef: {name: kafka, key: bootstrap}}}",
        );
        let (out, _) = inject_text(&app, "t", &args(true)).unwrap();
        let doc: Value = serde_norway::from_str(&out).unwrap();
        let pod = &doc["spec"]["template"]["spec"];
        let side = &pod["containers"][1];
        assert_eq!(side["name"], key("quarantine"));
        assert!(side.get("restartPolicy").is_none());
        assert_eq!(
            side["lifecycle"]["preStop"]["sleep"]["seconds"],
            Value::from(30)
        );
        assert_eq!(
            side["env"][1]["valueFrom"]["configMapKeyRef"]["name"],
            key("kafka")
        );
        let app_env = &pod["containers"][0]["env"][0];
        assert_eq!(app_env["value"], key("localhost:9092"));
        assert!(app_env.get("valueFrom").is_none());
    }

    #[test]
    fn lists_multi_docs_and_other_kinds() {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{ports: [{{port: 80}}]}}\n---\napiVersion: v1\nkind: List\nitems:\n{}\n---\n",
            APP.trim()
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
                .replacen("  apiVersion", "- apiVersion", 1)
        );
        let (out, report) = inject_text(&text, "t", &args(false)).unwrap();
        assert_eq!(report.len(), 1, "{out}");
        assert!(
            out.starts_with("---\napiVersion: v1\nkind: Service"),
            "{out}"
        );
    }

    #[test]
    fn conflicting_upstreams_and_bad_yaml_are_errors() {
        let two = APP.replace(
            "            - {name: OTHER, value: x}",
            "        - name: side\n          image: s\n          env: [{name: KAFKA_BROKERS, value: \"other:9092\"}]",
        );
        let e = inject_text(&two, "f.yaml", &args(false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.yaml: Deployment/orders") && e.contains("disagree"),
            "{e}"
        );
        let e = inject_text("a: [", "f.yaml", &args(false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.yaml: document 1"), "{e}");
    }
}
