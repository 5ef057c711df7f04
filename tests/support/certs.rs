//! Test certificates made at test time with `rcgen`: a CA and a server certificate for
//! `127.0.0.1` and `localhost`, written as PEM files into a fresh temporary directory that
//! is removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA and one server certificate it signed, as PEM files.
pub struct TestPki {
    dir: PathBuf,
    /// The CA certificate (PEM).
    pub ca_file: PathBuf,
    /// The server certificate chain (PEM), valid for `127.0.0.1` and `localhost`.
    pub cert_file: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key_file: PathBuf,
}

impl TestPki {
    /// Generates a new CA (named `ca_name`) and a server certificate signed by it.
    pub fn generate(ca_name: &str) -> TestPki {
        let dir = fresh_dir();
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("signed server cert");

        let pki = TestPki {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
            dir,
        };
        write(&pki.ca_file, &ca_cert.pem());
        write(&pki.cert_file, &cert.pem());
        write(&pki.key_file, &key.serialize_pem());
        pki
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "quarantine-pki-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}
