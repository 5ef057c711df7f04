//! The operator commands' client for a running proxy's admin API (`quarantine guard`,
//! `quarantine searches`): where the API is (`--admin`, or the proxy's own config file),
//! the token, and one HTTP/1.1 call with a bounded answer and a timeout.

use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::{Config, ConfigError};

/// Exit code for a bad command line (`EX_USAGE`).
pub const EX_USAGE: u8 = 64;

/// Largest answer read from the admin API.
const MAX_BODY: usize = 64 << 20;

/// Where the proxy's admin API is.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The proxy's admin API, http://HOST:PORT (default: from --config, else
    /// http://127.0.0.1:9644).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// The admin token (admin.token).
    #[arg(long, env = "QUARANTINE__ADMIN__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The proxy's YAML config file: its `admin.listen` and `admin.token` are used when
    /// --admin and --token are not given.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

impl AdminArgs {
    /// The admin API's base URL and token, from the flags or the config file.
    pub fn resolve(&self) -> Result<(String, Option<String>), AdminError> {
        let Some(file) = &self.config else {
            let url = self
                .admin
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:9644".into());
            return Ok((url, self.token.clone()));
        };
        let config = Config::load(Some(file), std::env::vars())?;
        let url = match &self.admin {
            Some(url) => url.clone(),
            None => {
                let listen = config.admin.listen;
                if listen.is_empty() {
                    return Err(AdminError::Usage(
                        "the config's admin.listen is empty: the admin API is off".into(),
                    ));
                }
                // A wildcard listen address is reached on loopback.
                let local = listen
                    .strip_prefix("0.0.0.0:")
                    .or_else(|| listen.strip_prefix("[::]:"))
                    .map(|port| format!("127.0.0.1:{port}"))
                    .unwrap_or(listen);
                format!("http://{local}")
            }
        };
        Ok((url, self.token.clone().or(config.admin.token)))
    }
}

/// Why an admin API command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The command line does not make sense.
    #[error("{0}")]
    Usage(String),
    /// The admin API could not be reached.
    #[error("admin API {url}: {message}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The config file is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The admin API answered with an error status.
    #[error("admin API {url} answered {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// The answer's text.
        body: String,
    },
}

/// Escapes a path segment: everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One admin API call; returns the answer's text.
pub async fn call(admin: &AdminArgs, method: Method, path: &str) -> Result<String, AdminError> {
    call_with(admin, method, path, None).await
}

/// One admin API call with an optional JSON body; returns the answer's text.
pub async fn call_with(
    admin: &AdminArgs,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<String, AdminError> {
    let (admin_url, token) = admin.resolve()?;
    let base: Uri = admin_url
        .parse()
        .map_err(|e| AdminError::Usage(format!("--admin `{admin_url}`: {e}")))?;
    if base.scheme_str() != Some("http") {
        return Err(AdminError::Usage(format!(
            "--admin `{admin_url}`: give http://HOST:PORT"
        )));
    }
    let host = base.host().unwrap_or_default().to_string();
    let port = base.port_u16().unwrap_or(80);
    let url = format!(
        "http://{host}:{port}{}{path}",
        base.path().trim_end_matches('/')
    );
    let unreachable = |message: String| AdminError::Unreachable {
        url: url.clone(),
        message,
    };
    let exchange = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| unreachable(format!("cannot connect: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| unreachable(format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", base.path().trim_end_matches('/')))
            .header(HOST, format!("{host}:{port}"))
            .header(USER_AGENT, "quarantine");
        let payload = match &body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        if let Some(token) = &token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(payload))
            .map_err(|e| AdminError::Usage(format!("cannot build the request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(format!("request failed: {e}")))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer failed: {e}")))?
            .to_bytes();
        Ok::<_, AdminError>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| unreachable("no answer within 30 s".into()))??;
    if !(200..300).contains(&status) {
        return Err(AdminError::Status {
            url,
            status,
            body: body.trim().to_string(),
        });
    }
    Ok(body.trim().to_string())
}

/// Rows as a table for a terminal: columns padded to their widest cell (in characters),
/// two spaces apart, no trailing blanks.
pub fn columns(lines: &[Vec<String>]) -> String {
    let n = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs one admin API command on a small runtime and prints its answer: exit 0, 64 for a
/// usage or config mistake, 1 when the API could not be reached or refused.
pub fn run_blocking(
    name: &str,
    command: impl std::future::Future<Output = Result<String, AdminError>>,
) -> std::process::ExitCode {
    use std::io::Write;
    use std::process::ExitCode;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            crate::ops::logging::stderr_line(&format!("{name}: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(text) => {
            // A closed pipe (`| head`) ends the output quietly.
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e @ (AdminError::Usage(_) | AdminError::Config(_))) => {
            crate::ops::logging::stderr_line(&format!("{name}: {e}"));
            ExitCode::from(EX_USAGE)
        }
        Err(e) => {
            crate::ops::logging::stderr_line(&format!("{name}: {e}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_names_the_admin_api_and_token() {
        let dir = std::env::temp_dir().join(format!("guard-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("quarantine.yaml");
        std::fs::write(
            &file,
            "admin:\n  listen: \"0.0.0.0:9700\"\n  token: \"qt_from_file\"\n",
        )
        .unwrap();
        let args = |admin: Option<&str>, token: Option<&str>| AdminArgs {
            admin: admin.map(str::to_string),
            token: token.map(str::to_string),
            config: Some(file.clone()),
        };
        assert_eq!(
            args(None, None).resolve().unwrap(),
            ("http://127.0.0.1:9700".into(), Some("qt_from_file".into()))
        );
        assert_eq!(
            args(Some("http://10.0.0.1:1"), Some("flag"))
                .resolve()
                .unwrap(),
            ("http://10.0.0.1:1".into(), Some("flag".into()))
        );
        let none = AdminArgs {
            admin: None,
            token: None,
            config: None,
        };
        assert_eq!(
            none.resolve().unwrap(),
            ("http://127.0.0.1:9644".into(), None)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn group_names_are_escaped_as_one_path_segment() {
        assert_eq!(percent_encode("orders.v2-x_y~"), "orders.v2-x_y~");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }
}
