//! TLS for LDAPS and StartTLS: certificate and key from PEM files, or a self-signed certificate
//! generated at start when none are configured (for demos and tests). The server configuration
//! sits behind an `ArcSwap`, so a reload (SIGHUP) affects new handshakes without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {path}: {why}")]
    Cert { path: PathBuf, why: String },
    #[error("cannot read TLS key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

pub struct Tls {
    source: Source,
    config: ArcSwap<ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn build(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<ServerConfig, TlsError> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Setup(e.to_string()))
}

fn load_files(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert { path: cert.into(), why: e.to_string() })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert { path: cert.into(), why: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Cert { path: cert.into(), why: "no certificate in the file".into() });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key { path: key.into(), why: e.to_string() })?;
    build(chain, key)
}

fn self_signed() -> Result<ServerConfig, TlsError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            names.push(h.to_string());
        }
    }
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Setup(e.to_string()))?;
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).map_err(|e| TlsError::Setup(e.to_string()))?;
    build(vec![cert.cert.der().clone()], key)
}

impl Tls {
    pub fn new(source: Source) -> Result<Tls, TlsError> {
        let config = match &source {
            Source::Files { cert, key } => load_files(cert, key)?,
            Source::SelfSigned => {
                tracing::warn!(
                    "no ldap.tls_cert/tls_key configured: using a self-signed certificate generated at start"
                );
                self_signed()?
            }
        };
        Ok(Tls { source, config: ArcSwap::from_pointee(config) })
    }

    /// Re-reads the certificate files; on failure the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        if let Source::Files { cert, key } = &self.source {
            let c = load_files(cert, key)?;
            self.config.store(Arc::new(c));
            tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
        }
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_builds() {
        assert!(Tls::new(Source::SelfSigned).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let e = Tls::new(Source::Files { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into() })
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
    }

    #[test]
    fn files_load_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cp, c.cert.pem()).unwrap();
        std::fs::write(&kp, c.signing_key.serialize_pem()).unwrap();
        let t = Tls::new(Source::Files { cert: cp.clone(), key: kp.clone() }).unwrap();
        std::fs::write(&cp, "garbage").unwrap();
        assert!(t.reload().is_err(), "a broken file is reported");
        let c2 = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
        std::fs::write(&cp, c2.cert.pem()).unwrap();
        std::fs::write(&kp, c2.signing_key.serialize_pem()).unwrap();
        assert!(t.reload().is_ok());
    }
}
