//! The cluster's certificates: a CA, the API server's serving certificate,
//! the admin client identity and the API server's identity towards node
//! agents (kube-apiserver's `apiserver-kubelet-client`), created on first start in the data
//! directory and reused afterwards.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

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
    Ok(Pki {
        ca_cert,
        ca_key,
        serving_cert,
        serving_key,
        admin_cert,
        admin_key,
        kubelet_client_cert,
        kubelet_client_key,
    })
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
/// peers and is a client towards peers) and the API server's client
/// certificate, all under `<pki>/etcd/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdFiles {
    pub ca_cert: PathBuf,
    pub member_cert: PathBuf,
    pub member_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
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
        }
    }
}

/// The etcd CA (created when missing, as kubeadm's `etcd/ca`), the
/// certificate of the etcd member at `member_ip` and the API server's etcd
/// client certificate, issued afresh on every call so that a replaced
/// member gets its own address.
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
        || client_params("kube-apiserver-etcd-client", "system:masters"),
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
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `<name>.crt`/`<name>.key`: read, or (when missing or `renew`) issued.
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
        return Ok((read(&cert_path)?, read(&key_path)?));
    }
    let generate = |source| PkiError::Generate { what: name, source };
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params()
        .and_then(|params| params.signed_by(&key, issuer))
        .map_err(generate)?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    write(&cert_path, &cert)?;
    write(&key_path, &key)?;
    Ok((cert, key))
}

pub(super) fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.into(),
        source,
    })
}

/// Writes a file readable only by its owner: keys must not leak.
pub(super) fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|source| PkiError::Io {
            path: path.into(),
            source,
        })
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
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.join("ca.key")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
