//! TLS material: a local certificate authority made on first start (kept under `<data>/tls/`), and a
//! server certificate signed by it, made anew at every start for the names clients use. Clients verify
//! the gateway with `ca.pem`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot read PEM: {0}")]
    Pem(String),
}

pub struct TlsMaterial {
    pub ca_path: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
    pub client_config: Arc<rustls::ClientConfig>,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Strata local CA");
    dn.push(DnType::OrganizationName, "Strata");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn write_private(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes.as_ref()).map_err(io)
}

/// The key HTTP SQL session tokens are signed with: 32 random bytes under `dir`, made on first
/// start and kept, so tokens outlive a restart.
pub fn session_key(dir: &Path) -> Result<Vec<u8>, TlsError> {
    let path = dir.join("http-session.key");
    if let Ok(k) = std::fs::read(&path) {
        if k.len() >= 32 {
            return Ok(k);
        }
    }
    let mut k = vec![0u8; 32];
    strata_model::ids::random_bytes(&mut k);
    write_private(&path, &k)?;
    Ok(k)
}

/// Loads (or makes) the CA under `dir` and issues a server certificate for `names`.
pub fn ensure(dir: &Path, names: &[String]) -> Result<TlsMaterial, TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    let ca_key = if ca_path.exists() && ca_key_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        KeyPair::from_pem(&pem)?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem())?;
        std::fs::write(&ca_path, cert.pem()).map_err(io(&ca_path))?;
        key
    };
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(io(&ca_path))?;

    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params(), &ca_key);
    let server_cert = params.signed_by(&server_key, &issuer)?;
    let server_pem = server_cert.pem();
    std::fs::write(dir.join("server.pem"), format!("{server_pem}{ca_pem}")).map_err(io(dir))?;
    write_private(&dir.join("server-key.pem"), server_key.serialize_pem())?;

    let chain = vec![
        CertificateDer::from_pem_slice(server_pem.as_bytes())
            .map_err(|e| TlsError::Pem(e.to_string()))?,
        CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| TlsError::Pem(e.to_string()))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(
        CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| TlsError::Pem(e.to_string()))?,
    )?;
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsMaterial {
        ca_path,
        server_config: Arc::new(server_config),
        client_config: Arc::new(client_config),
    })
}

/// A client configuration trusting the CA in `ca_pem` (for `strata connect`).
pub fn client_config_from_ca(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.map_err(|e| TlsError::Pem(e.to_string()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
