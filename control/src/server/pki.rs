//! The cluster's certificates: a CA, the API server's serving certificate,
//! the admin client identity and the API server's identity towards node
//! agents (kube-apiserver's `apiserver-kubelet-client`) and the key pair
//! service-account tokens are signed with (kubeadm's `sa.key`/`sa.pub`),
//! created on first start in the data directory and reused afterwards.
//! CAs last ten years and leaves one, as kubeadm's; a leaf near its end is
//! reissued from its CA at start.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use tracing::info;
use x509_parser::pem::parse_x509_pem;

/// How long a CA is valid, as kubeadm's.
const CA_VALIDITY: Duration = Duration::days(3650);

/// How long a leaf certificate is valid, as kubeadm's.
const LEAF_VALIDITY: Duration = Duration::days(365);

/// A leaf expiring sooner than this is reissued at start.
const RENEW_BEFORE: Duration = Duration::days(30);

/// Nor may a leaf be used past this share of its life (a short-lived
/// certificate would otherwise only be renewed in its last days).
const RENEW_AFTER_SHARE: f64 = 0.8;

/// Names every serving certificate carries: loopback, the control-plane
/// address of skiff's local cluster, and the in-cluster `kubernetes`
/// Service (its name and ClusterIP).
pub const DEFAULT_SANS: &[&str] = &[
    "127.0.0.1",
    "172.30.0.254",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// PEM certificates and keys.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: String,
    /// Signs what the CertificateSigningRequest signer issues.
    pub ca_key: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    pub kubelet_client_cert: String,
    pub kubelet_client_key: String,
    /// The service-account signing key (PKCS#8 P-256) and its public key.
    pub service_account_key: String,
    pub service_account_public_key: String,
}

/// The name node agents serve: theirs and kube-apiserver's.
pub const KUBELET_CLIENT_NAME: &str = "kube-apiserver-kubelet-client";

/// Loads the PKI from `dir`, creating what is missing. A new CA means new
/// leaf certificates too (the old ones would not verify).
pub fn load_or_create(dir: &Path, extra_sans: &[String]) -> Result<Pki, PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.into(),
        source,
    })?;
    let file = |name: &str| dir.join(name);
    let ca_exists = file("ca.crt").exists() && file("ca.key").exists();
    let (ca_cert, ca_key) = if ca_exists {
        (read(&file("ca.crt"))?, read(&file("ca.key"))?)
    } else {
        let (cert, key) = create_ca("skiff-ca")?;
        write(&file("ca.crt"), &cert)?;
        write(&file("ca.key"), &key)?;
        (cert, key)
    };
    let generate = |what| move |source| PkiError::Generate { what, source };
    let ca_key_pair = KeyPair::from_pem(&ca_key).map_err(generate("the CA key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert, ca_key_pair).map_err(generate("the CA issuer"))?;

    let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| (*s).to_owned()).collect();
    sans.extend(
        extra_sans
            .iter()
            .filter(|s| !sans.contains(s))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let (serving_cert, serving_key) = leaf(
        dir,
        "apiserver",
        !ca_exists,
        || {
            let mut params = CertificateParams::new(sans.clone())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "skiff-apiserver");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            Ok(params)
        },
        &issuer,
    )?;
    let (admin_cert, admin_key) = leaf(
        dir,
        "admin",
        !ca_exists,
        || client_params("admin", "system:masters"),
        &issuer,
    )?;
    let (kubelet_client_cert, kubelet_client_key) = leaf(
        dir,
        "apiserver-kubelet-client",
        !ca_exists,
        || client_params(KUBELET_CLIENT_NAME, "system:masters"),
        &issuer,
    )?;
    let (service_account_key, service_account_public_key) = service_account_keys(dir)?;
    Ok(Pki {
        ca_cert,
        ca_key,
        serving_cert,
        serving_key,
        admin_cert,
        admin_key,
        kubelet_client_cert,
        kubelet_client_key,
        service_account_key,
        service_account_public_key,
    })
}

/// The service-account key pair in `dir`, created when missing. Joining
/// members copy it from the first, so every member verifies every token.
fn service_account_keys(dir: &Path) -> Result<(String, String), PkiError> {
    let (private, public) = (dir.join("sa.key"), dir.join("sa.pub"));
    if private.exists() && public.exists() {
        return Ok((read(&private)?, read(&public)?));
    }
    let pair = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "the service-account key",
        source,
    })?;
    let (key, public_key) = (pair.serialize_pem(), pair.public_key_pem());
    write(&private, &key)?;
    write(&public, &public_key)?;
    Ok((key, public_key))
}

/// A client identity: its user name and group.
fn client_params(name: &str, group: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, group);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// The files of an etcd CA, a member's certificate (it serves clients and
/// peers and is a client towards peers), the API server's client
/// certificate (etcd user `root`) and the agents' (etcd user
/// `skiff-agent`), all under `<pki>/etcd/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdFiles {
    pub ca_cert: PathBuf,
    pub member_cert: PathBuf,
    pub member_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub agent_cert: PathBuf,
    pub agent_key: PathBuf,
}

impl EtcdFiles {
    pub fn in_dir(pki_dir: &Path) -> EtcdFiles {
        let dir = pki_dir.join("etcd");
        EtcdFiles {
            ca_cert: dir.join("ca.crt"),
            member_cert: dir.join("member.crt"),
            member_key: dir.join("member.key"),
            client_cert: dir.join("apiserver-etcd-client.crt"),
            client_key: dir.join("apiserver-etcd-client.key"),
            agent_cert: dir.join("agent-etcd-client.crt"),
            agent_key: dir.join("agent-etcd-client.key"),
        }
    }
}

/// The etcd CA (created when missing, as kubeadm's `etcd/ca`), the
/// certificate of the etcd member at `member_ip` and the API server's and
/// the agents' etcd client certificates, issued afresh on every call so
/// that a replaced member gets its own address. With etcd's
/// `--client-cert-auth` a certificate's CN is the etcd user it acts as
/// (`skiff_etcd::auth`): the API server is `root`, the agents share the
/// read-mostly `skiff-agent` (their etcd role is the same on every node,
/// so one certificate per node would separate nothing in etcd).
pub fn issue_etcd(pki_dir: &Path, member_ip: std::net::IpAddr) -> Result<EtcdFiles, PkiError> {
    let dir = pki_dir.join("etcd");
    fs::create_dir_all(&dir).map_err(|source| PkiError::Io {
        path: dir.clone(),
        source,
    })?;
    let (ca_cert_path, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca_cert, ca_key) = if ca_cert_path.exists() && ca_key_path.exists() {
        (read(&ca_cert_path)?, read(&ca_key_path)?)
    } else {
        let (cert, key) = create_ca("skiff-etcd-ca")?;
        write(&ca_cert_path, &cert)?;
        write(&ca_key_path, &key)?;
        (cert, key)
    };
    let generate = |what| move |source| PkiError::Generate { what, source };
    let issuer = KeyPair::from_pem(&ca_key)
        .and_then(|key| Issuer::from_ca_cert_pem(&ca_cert, key))
        .map_err(generate("the etcd CA issuer"))?;
    leaf(
        &dir,
        "member",
        true,
        || {
            let mut params =
                CertificateParams::new(vec![member_ip.to_string(), "127.0.0.1".to_owned()])?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("etcd-{member_ip}"));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            Ok(params)
        },
        &issuer,
    )?;
    leaf(
        &dir,
        "apiserver-etcd-client",
        true,
        || client_params(skiff_etcd::auth::ROOT_USER, "system:masters"),
        &issuer,
    )?;
    leaf(
        &dir,
        "agent-etcd-client",
        true,
        || client_params(skiff_etcd::auth::AGENT_USER, "system:nodes"),
        &issuer,
    )?;
    Ok(EtcdFiles::in_dir(pki_dir))
}

fn create_ca(common_name: &str) -> Result<(String, String), PkiError> {
    let generate = |source| PkiError::Generate {
        what: "the CA",
        source,
    };
    let key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + CA_VALIDITY;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `<name>.crt`/`<name>.key`: read, or (when missing, `renew`, or near
/// its end: see [`due_for_renewal`]) issued for [`LEAF_VALIDITY`].
fn leaf(
    dir: &Path,
    name: &'static str,
    renew: bool,
    params: impl FnOnce() -> Result<CertificateParams, rcgen::Error>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), PkiError> {
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if !renew && cert_path.exists() && key_path.exists() {
        let cert = read(&cert_path)?;
        match due_for_renewal(&cert, OffsetDateTime::now_utc()) {
            None => return Ok((cert, read(&key_path)?)),
            Some(why) => info!(certificate = %cert_path.display(), why, "reissuing"),
        }
    }
    issue_leaf(dir, name, params, issuer, LEAF_VALIDITY)
}

/// Issues `<name>.crt`/`<name>.key` valid from now for `validity`.
fn issue_leaf(
    dir: &Path,
    name: &'static str,
    params: impl FnOnce() -> Result<CertificateParams, rcgen::Error>,
    issuer: &Issuer<'_, KeyPair>,
    validity: Duration,
) -> Result<(String, String), PkiError> {
    let generate = |source| PkiError::Generate { what: name, source };
    let key = KeyPair::generate().map_err(generate)?;
    let now = OffsetDateTime::now_utc();
    let cert = params()
        .and_then(|mut params| {
            params.not_before = now;
            params.not_after = now + validity;
            params.signed_by(&key, issuer)
        })
        .map_err(generate)?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    write(&dir.join(format!("{name}.crt")), &cert)?;
    write(&dir.join(format!("{name}.key")), &key)?;
    Ok((cert, key))
}

/// Why the PEM certificate `cert` should be reissued at `now`: it expires
/// within [`RENEW_BEFORE`], is past [`RENEW_AFTER_SHARE`] of its life, or
/// cannot be read. `None` while it is good.
fn due_for_renewal(cert: &str, now: OffsetDateTime) -> Option<&'static str> {
    let Ok((_, pem)) = parse_x509_pem(cert.as_bytes()) else {
        return Some("it is not PEM");
    };
    let Ok(parsed) = pem.parse_x509() else {
        return Some("it is no X.509 certificate");
    };
    let validity = parsed.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    let lifetime = (not_after - not_before).as_seconds_f64();
    if not_after - now < RENEW_BEFORE {
        Some("it expires within 30 days")
    } else if (now - not_before).as_seconds_f64() > lifetime * RENEW_AFTER_SHARE {
        Some("it is past 80% of its lifetime")
    } else {
        None
    }
}

pub(super) fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.into(),
        source,
    })
}

/// Writes a file readable only by its owner: keys must not leak. The file
/// is made with that mode next to `path` and renamed over it, so that an
/// older copy with a wider mode is replaced, not rewritten in place, and no
/// reader sees half a file.
pub(super) fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut staged = path.as_os_str().to_owned();
    staged.push(".new");
    let staged = PathBuf::from(staged);
    let io_error = |source| PkiError::Io {
        path: path.into(),
        source,
    };
    match fs::remove_file(&staged) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(io_error(error)),
        _ => {}
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .and_then(|()| fs::rename(&staged, path))
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("skiff-pki-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = load_or_create(&dir, &["192.0.2.1".into()]).unwrap();
        let again = load_or_create(&dir, &[]).unwrap();
        assert_eq!(first.ca_cert, again.ca_cert);
        assert_eq!(first.serving_cert, again.serving_cert);
        assert_eq!(first.admin_key, again.admin_key);
        assert_eq!(first.service_account_key, again.service_account_key);
        for key in ["ca.key", "sa.key", "sa.pub"] {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &fs::metadata(dir.join(key)).unwrap().permissions(),
            );
            assert_eq!(mode & 0o077, 0, "{key}");
        }
        crate::serviceaccount::Keys::from_pem(
            &first.service_account_key,
            &first.service_account_public_key,
        )
        .unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    fn validity(cert: &str) -> (OffsetDateTime, OffsetDateTime) {
        let (_, pem) = parse_x509_pem(cert.as_bytes()).unwrap();
        let parsed = pem.parse_x509().unwrap();
        (
            parsed.validity().not_before.to_datetime(),
            parsed.validity().not_after.to_datetime(),
        )
    }

    #[test]
    fn certificates_have_real_lifetimes_and_short_lived_leaves_are_reissued() {
        let dir = std::env::temp_dir().join(format!("skiff-pki-rotation-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = load_or_create(&dir, &[]).unwrap();
        let (ca_from, ca_until) = validity(&first.ca_cert);
        assert_eq!((ca_until - ca_from).whole_days(), 3650);
        let (from, until) = validity(&first.admin_cert);
        assert_eq!((until - from).whole_days(), 365);
        assert_eq!(
            due_for_renewal(&first.admin_cert, OffsetDateTime::now_utc()),
            None
        );
        assert!(due_for_renewal(&first.admin_cert, from + Duration::days(300)).is_some());

        // An admin certificate that expires in a day is reissued at the
        // next start, from the same CA; the others stay.
        let issuer = Issuer::from_ca_cert_pem(
            &first.ca_cert,
            KeyPair::from_pem(&read(&dir.join("ca.key")).unwrap()).unwrap(),
        )
        .unwrap();
        let (short, _) = issue_leaf(
            &dir,
            "admin",
            || client_params("admin", "system:masters"),
            &issuer,
            Duration::days(1),
        )
        .unwrap();
        assert!(due_for_renewal(&short, OffsetDateTime::now_utc()).is_some());
        let again = load_or_create(&dir, &[]).unwrap();
        assert_ne!(again.admin_cert, short);
        assert_eq!(again.ca_cert, first.ca_cert);
        assert_eq!(again.serving_cert, first.serving_cert);
        let (from, until) = validity(&again.admin_cert);
        assert_eq!((until - from).whole_days(), 365);
        fs::remove_dir_all(&dir).unwrap();
    }
}
