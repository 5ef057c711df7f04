//! TLS settings: a rustls client config towards the brokers (custom CA, optional client
//! certificate) and an optional rustls server config towards applications.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{ConfigError, DownstreamTls, UpstreamTls};

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let data = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let data = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?
        .ok_or_else(|| {
            ConfigError::invalid(key, format!("{} holds no PEM private key", path.display()))
        })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client config used towards brokers.
pub fn upstream_config(tls: &UpstreamTls) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for cert in certs("upstream.tls.ca_file", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::invalid("upstream.tls.ca_file", e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("upstream.tls", e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(
                certs("upstream.tls.cert_file", c)?,
                private_key("upstream.tls.key_file", k)?,
            )
            .map_err(|e| ConfigError::invalid("upstream.tls.key_file", e.to_string()))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Builds the server config used towards applications.
pub fn downstream_config(tls: &DownstreamTls) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("proxy.tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            certs("proxy.tls.cert_file", &tls.cert_file)?,
            private_key("proxy.tls.key_file", &tls.key_file)?,
        )
        .map_err(|e| ConfigError::invalid("proxy.tls.key_file", e.to_string()))?;
    Ok(Arc::new(config))
}

/// The name to verify a broker's certificate against.
pub fn server_name(tls: &UpstreamTls, host: &str) -> Result<ServerName<'static>, String> {
    let name = tls.server_name.as_deref().unwrap_or(host).to_string();
    ServerName::try_from(name).map_err(|e| e.to_string())
}
