//! The cluster's own credentials: what the internal roles (coordinator,
//! executors) hold to trust each other, kept apart from the gateways'
//! user-token key.
//!
//! They live in one folder per cluster (`tarn certs --dir DIR` makes it;
//! `tarn standalone` makes its own under the state directory):
//!
//! - `ca.pem` / `ca.key`: the cluster's certificate authority. Every role
//!   gets `ca.pem`; `ca.key` stays with the operator.
//! - `<role>.pem` / `<role>.key` for `coordinator`, `executor`, `gateway`:
//!   each role's certificate. Every internal connection is mutual TLS with
//!   these, and the certificate's name says which role the caller is.
//! - `reservation.key`: coordinators sign direct-run reservations with it
//!   and executors check them. Gateways never need it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::auth::TokenKey;
use crate::{ErrorCode, TarnError};

/// The name every role's certificate holds: clients check that they talk
/// to a member of this cluster.
pub const CLUSTER_NAME: &str = "tarn.internal";

/// A role of the internal plane, as its certificate proves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Owns leases and the scheduler.
    Coordinator,
    /// Runs tasks.
    Executor,
    /// The public door: leases and submits plans for users.
    Gateway,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Coordinator, Role::Executor, Role::Gateway];

    /// The role's name, as in file names.
    pub fn name(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Executor => "executor",
            Role::Gateway => "gateway",
        }
    }

    /// The DNS name in the role's certificate that proves the role.
    pub fn dns_name(self) -> String {
        format!("{}.{CLUSTER_NAME}", self.name())
    }
}

/// The reservation key's file name in the cluster folder.
pub const RESERVATION_KEY_FILE: &str = "reservation.key";

/// Why the cluster credentials cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cluster credentials in {dir}: {cause}; create them with `tarn certs --dir {dir}` and give every coordinator and executor the same folder (--cluster-dir)")]
pub struct CredentialsError {
    dir: String,
    cause: String,
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join(RESERVATION_KEY_FILE)
}

/// Loads the reservation key from the cluster folder `dir`.
pub fn reservation_key(dir: &Path) -> Result<TokenKey, CredentialsError> {
    let err = |cause: String| CredentialsError {
        dir: dir.display().to_string(),
        cause,
    };
    if dir.as_os_str().is_empty() {
        return Err(err("no folder was given".into()));
    }
    TokenKey::load(&key_path(dir)).map_err(|e| err(e.to_string()))
}

/// Creates the cluster folder's credentials that are missing (keeping any
/// that exist, so every role keeps trusting the others).
pub fn create(dir: &Path) -> Result<(), CredentialsError> {
    let err = |cause: String| CredentialsError {
        dir: dir.display().to_string(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    TokenKey::load_or_create(&key_path(dir)).map_err(|e| err(e.to_string()))?;
    let have = |f: &str| dir.join(f).is_file();
    let all_certs = Role::ALL
        .iter()
        .all(|r| have(&format!("{}.pem", r.name())) && have(&format!("{}.key", r.name())));
    if have("ca.pem") && all_certs {
        return Ok(());
    }
    if have("ca.pem") {
        return Err(err(
            "ca.pem exists but some role certificates are missing; restore them, or move the \
             folder away to make a new CA (every role then needs the new files)"
                .into(),
        ));
    }
    let files = make_certificates().map_err(|e| err(format!("cannot make certificates: {e}")))?;
    for (name, text, secret) in files {
        write_file(&dir.join(name), text.as_bytes(), secret).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, if secret { 0o600 } else { 0o644 });
    let mut f = opts.open(path)?;
    std::io::Write::write_all(&mut f, bytes)
}

/// A new CA and a certificate for each role: (file name, PEM, secret?).
fn make_certificates() -> Result<Vec<(String, String, bool)>, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Tarn cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut files = vec![
        ("ca.pem".to_string(), ca_cert.pem(), false),
        ("ca.key".to_string(), ca_key.serialize_pem(), true),
    ];
    let issuer = Issuer::new(ca, ca_key);
    for role in Role::ALL {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![CLUSTER_NAME.to_string(), role.dns_name()])?;
        p.distinguished_name
            .push(DnType::CommonName, format!("tarn {}", role.name()));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &issuer)?;
        files.push((format!("{}.pem", role.name()), cert.pem(), false));
        files.push((format!("{}.key", role.name()), key.serialize_pem(), true));
    }
    Ok(files)
}

/// One role's TLS material: the cluster CA, its certificate and key.
#[derive(Clone)]
pub struct ClusterTls {
    role: Role,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterTls({})", self.role.name())
    }
}

static INSTALLED: OnceLock<Arc<ClusterTls>> = OnceLock::new();

/// Picks ring as the process's TLS crypto: the dependency tree enables
/// both of rustls' providers, and rustls then refuses to guess.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ClusterTls {
    /// Loads `role`'s certificate, key and the CA from the cluster folder.
    pub fn load(dir: &Path, role: Role) -> Result<Self, CredentialsError> {
        install_crypto();
        let read = |f: String| {
            std::fs::read(dir.join(&f)).map_err(|e| CredentialsError {
                dir: dir.display().to_string(),
                cause: format!("{f}: {e}"),
            })
        };
        Ok(Self {
            role,
            ca: read("ca.pem".into())?,
            cert: read(format!("{}.pem", role.name()))?,
            key: read(format!("{}.key", role.name()))?,
        })
    }

    /// Makes this the process's identity on the internal plane (first call
    /// wins: a process is one role).
    pub fn install(self) -> Arc<ClusterTls> {
        Arc::clone(INSTALLED.get_or_init(|| Arc::new(self)))
    }

    /// The process's identity, once installed.
    pub fn installed() -> Option<Arc<ClusterTls>> {
        INSTALLED.get().cloned()
    }

    /// The role this material proves.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Server side: present this role's certificate and require a client
    /// certificate from the cluster CA.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca))
    }

    /// Client side: trust only the cluster CA, present this role's
    /// certificate.
    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca))
            .identity(tonic::transport::Identity::from_pem(&self.cert, &self.key))
            .domain_name(CLUSTER_NAME)
    }

    /// `endpoint` made to speak TLS with this role's identity (the scheme
    /// becomes `https`; tonic speaks TLS only to `https` URIs).
    pub fn secure(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        let uri = endpoint.uri();
        if uri.scheme_str() == Some("https") {
            return endpoint.tls_config(self.client_config());
        }
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        let https = format!("https://{authority}{}", if path == "/" { "" } else { path });
        // Rebuilt from its URI, the endpoint loses its settings: these are
        // the ones every Tarn and Ballista client uses.
        tonic::transport::Endpoint::from_shared(https)?
            .connect_timeout(std::time::Duration::from_secs(20))
            .tcp_nodelay(true)
            .tcp_keepalive(Some(std::time::Duration::from_secs(3600)))
            .http2_keep_alive_interval(std::time::Duration::from_secs(300))
            .keep_alive_timeout(std::time::Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .tls_config(self.client_config())
    }
}

/// An endpoint for `addr` (`host:port` or a URL) on the internal plane:
/// mutual TLS with the installed identity, plain HTTP/2 when none is
/// installed (only tests of single components run so).
pub fn endpoint(addr: &str) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let e = tonic::transport::Endpoint::from_shared(url)?;
    match ClusterTls::installed() {
        Some(tls) => tls.secure(e),
        None => Ok(e),
    }
}

/// `endpoint` secured with the installed identity, in the shape Ballista's
/// endpoint overrides take (its scheduler, executors and clients dial
/// `http://` endpoints and let an override configure them).
pub fn secure_endpoint(
    endpoint: tonic::transport::Endpoint,
) -> Result<tonic::transport::Endpoint, Box<dyn std::error::Error + Send + Sync>> {
    match ClusterTls::installed() {
        Some(tls) => Ok(tls.secure(endpoint)?),
        None => Ok(endpoint),
    }
}

/// Which role the peer of a TLS connection proved, from its certificate.
pub fn peer_role(extensions: &tonic::codegen::http::Extensions) -> Option<Role> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    let leaf = certs.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    Role::ALL.into_iter().find(|r| {
        rustls_pki_types::ServerName::try_from(r.dns_name())
            .ok()
            .is_some_and(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
    })
}

/// The refusal a caller without an allowed role gets.
pub fn refusal(path: &str, role: Option<Role>, allowed: &[Role]) -> TarnError {
    let who = role.map_or("a caller without a cluster certificate".to_string(), |r| {
        format!("a {}", r.name())
    });
    let may: Vec<_> = allowed.iter().map(|r| r.name()).collect();
    TarnError::new(
        ErrorCode::ClusterCredentialRefused,
        format!("{who} may not call {path}; only {} may", may.join(" or ")),
    )
}

/// A gRPC service that serves only callers whose certificate proves one
/// of the roles `policy` allows for the called method's path.
#[derive(Clone)]
pub struct RoleGuard<S> {
    inner: S,
    policy: fn(&str) -> &'static [Role],
}

impl<S> RoleGuard<S> {
    /// Guards `inner` with `policy` (method path -> allowed roles).
    pub fn new(inner: S, policy: fn(&str) -> &'static [Role]) -> Self {
        Self { inner, policy }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for RoleGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for RoleGuard<S>
where
    S: tonic::codegen::Service<
        tonic::codegen::http::Request<B>,
        Response = tonic::codegen::http::Response<tonic::body::Body>,
    >,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let allowed = (self.policy)(&path);
        let role = peer_role(req.extensions());
        if role.is_some_and(|r| allowed.contains(&r)) {
            let fut = self.inner.call(req);
            return Box::pin(fut);
        }
        let e = refusal(&path, role, allowed);
        tracing::warn!(%path, role = ?role.map(Role::name), "refused an internal call");
        Box::pin(async move { Ok(e.to_status().into_http()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_prove_their_role() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        for role in Role::ALL {
            let pem = std::fs::read(dir.path().join(format!("{}.pem", role.name()))).unwrap();
            let der =
                rustls_pki_types::CertificateDer::from(pem_to_der(&pem).expect("one certificate"));
            let cert = webpki::EndEntityCert::try_from(&der).unwrap();
            for other in Role::ALL {
                let name = rustls_pki_types::ServerName::try_from(other.dns_name()).unwrap();
                assert_eq!(
                    cert.verify_is_valid_for_subject_name(&name).is_ok(),
                    other == role,
                    "{} certificate vs {}",
                    role.name(),
                    other.name()
                );
            }
            assert!(ClusterTls::load(dir.path(), role).is_ok());
        }
        // Keys are secret to their owner.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("gateway.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "gateway.key is readable by others");
        }
    }

    fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
        use base64::Engine;
        let text = std::str::from_utf8(pem).ok()?;
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    }

    #[test]
    fn create_is_idempotent_and_load_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("cluster");
        let e = reservation_key(&d).unwrap_err().to_string();
        assert!(e.contains("tarn certs --dir"), "{e}");
        create(&d).unwrap();
        let first = std::fs::read(d.join(RESERVATION_KEY_FILE)).unwrap();
        create(&d).unwrap();
        assert_eq!(std::fs::read(d.join(RESERVATION_KEY_FILE)).unwrap(), first);
        let k = reservation_key(&d).unwrap();
        assert!(k.check_tag(b"m", &reservation_key(&d).unwrap().tag(b"m")));
    }
}
