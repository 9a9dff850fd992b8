//! The node's client certificate, as the kubelet's TLS bootstrap: with the
//! bootstrap kubeconfig (a bootstrap token), a CertificateSigningRequest
//! for `CN=system:node:<name>, O=system:nodes` to
//! `kubernetes.io/kube-apiserver-client-kubelet`, which the control plane
//! approves and signs; then the key, the certificate and a kubeconfig
//! naming them, all readable by the owner only. A certificate is renewed
//! the same way once four fifths of its life have passed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{ObjectMeta, PostParams};
use kube::config::Kubeconfig;
use serde_json::json;
use tracing::info;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{ApiCredentials, client};

const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// How long the agent waits for its request to be signed.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Makes sure `credentials.kubeconfig` holds a fresh client certificate,
/// bootstrapping one into `pki_dir` when not.
pub async fn ensure(
    credentials: &ApiCredentials,
    pki_dir: &Path,
    node: &str,
) -> anyhow::Result<()> {
    let path = &credentials.kubeconfig;
    if path.exists() && !needs_renewal(path)? {
        return Ok(());
    }
    let Some(bootstrap) = &credentials.bootstrap_kubeconfig else {
        bail!(
            "--kubeconfig {} is missing or its certificate expires soon, and no --bootstrap-kubeconfig was given",
            path.display()
        );
    };
    info!(kubeconfig = %path.display(), bootstrap = %bootstrap.display(), "bootstrapping the node's client certificate");
    std::fs::create_dir_all(pki_dir).with_context(|| format!("creating {}", pki_dir.display()))?;
    let key = rcgen::KeyPair::generate().context("generating the node's key")?;
    let key_file = pki_dir.join("kubelet-client.key");
    let cert_file = pki_dir.join("kubelet-client.crt");
    write_private(&key_file, &key.serialize_pem())?;
    let certificate = issue(bootstrap, &key, node).await?;
    write_private(&cert_file, &certificate)?;
    let document = kubeconfig(bootstrap, &cert_file, &key_file)?;
    write_private(path, &serde_json::to_string_pretty(&document)?)?;
    info!(kubeconfig = %path.display(), "the node's client certificate is issued");
    Ok(())
}

/// Whether the client certificate the kubeconfig at `path` names is in the
/// last fifth of its life (or past it). A kubeconfig without a client
/// certificate file (a token, say) is used as it is.
fn needs_renewal(path: &Path) -> anyhow::Result<bool> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let Some(cert_file) = kubeconfig
        .auth_infos
        .iter()
        .find_map(|named| named.auth_info.as_ref()?.client_certificate.clone())
    else {
        return Ok(false);
    };
    let Ok(pem) = std::fs::read(&cert_file) else {
        return Ok(true);
    };
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return Ok(true);
    };
    let Ok((_, certificate)) = X509Certificate::from_der(&block.contents) else {
        return Ok(true);
    };
    let validity = certificate.validity();
    let (start, end) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);
    Ok(now >= renewal_time(start, end))
}

/// When a certificate valid from `start` to `end` is renewed: with a fifth
/// of its life left.
fn renewal_time(start: i64, end: i64) -> i64 {
    end - (end - start) / 5
}

/// The certificate (PEM) the control plane issues for `key` as `node`,
/// asked for with the bootstrap kubeconfig.
async fn issue(bootstrap: &Path, key: &rcgen::KeyPair, node: &str) -> anyhow::Result<String> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(key)?.pem()?;
    let requests: kube::Api<CertificateSigningRequest> = kube::Api::all(client(bootstrap).await?);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".to_owned()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: SIGNER.to_owned(),
            usages: Some(vec![
                "digital signature".to_owned(),
                "client auth".to_owned(),
            ]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = requests
        .create(&PostParams::default(), &csr)
        .await
        .context("creating the CertificateSigningRequest")?;
    let name = created.metadata.name.unwrap_or_default();
    info!(
        csr = name,
        "waiting for the CertificateSigningRequest to be approved and signed"
    );
    let started = Instant::now();
    let mut reported = Instant::now();
    loop {
        let current = requests
            .get(&name)
            .await
            .with_context(|| format!("reading {name}"))?;
        let status = current.status.unwrap_or_default();
        for condition in status.conditions.iter().flatten() {
            if matches!(condition.type_.as_str(), "Denied" | "Failed") && condition.status == "True"
            {
                bail!(
                    "the CertificateSigningRequest {name} was {}: {}",
                    condition.type_,
                    condition.message.clone().unwrap_or_default()
                );
            }
        }
        if let Some(certificate) = status.certificate.filter(|c| !c.0.is_empty()) {
            return String::from_utf8(certificate.0).context("the issued certificate");
        }
        if started.elapsed() > ISSUE_TIMEOUT {
            bail!("the CertificateSigningRequest {name} was not signed within {ISSUE_TIMEOUT:?}");
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            info!(csr = name, waited = ?started.elapsed(), "still waiting for the certificate");
            reported = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The node's kubeconfig: the bootstrap kubeconfig's cluster (server and
/// CA), the node's certificate and key files as its user.
fn kubeconfig(
    bootstrap: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> anyhow::Result<serde_json::Value> {
    let kubeconfig = Kubeconfig::read_from(bootstrap)
        .with_context(|| format!("reading the bootstrap kubeconfig {}", bootstrap.display()))?;
    let wanted = kubeconfig
        .current_context
        .as_deref()
        .and_then(|name| kubeconfig.contexts.iter().find(|c| c.name == name))
        .and_then(|named| named.context.as_ref())
        .map(|context| context.cluster.clone());
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|cluster| wanted.as_deref().is_none_or(|name| cluster.name == name))
        .and_then(|named| named.cluster.clone())
        .with_context(|| format!("{}: no cluster", bootstrap.display()))?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "default-cluster", "cluster": cluster }],
        "users": [{
            "name": "default-auth",
            "user": { "client-certificate": cert_file, "client-key": key_file },
        }],
        "contexts": [{
            "name": "default-context",
            "context": { "cluster": "default-cluster", "user": "default-auth" },
        }],
        "current-context": "default-context",
    }))
}

/// Writes `contents` to `path`, readable by the owner only: a new file
/// beside it renamed over it, so a reader sees the old or the new file.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.part", path.display()));
    let _ = std::fs::remove_file(&partial);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_with_a_fifth_of_the_life_left() {
        assert_eq!(renewal_time(0, 1000), 800);
        assert_eq!(renewal_time(100, 600), 500);
    }

    #[test]
    fn the_node_kubeconfig_keeps_the_cluster_and_names_the_files() {
        let dir =
            std::env::temp_dir().join(format!("skiff-agent-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bootstrap = dir.join("bootstrap.kubeconfig");
        std::fs::write(
            &bootstrap,
            r#"{"apiVersion":"v1","kind":"Config",
                "clusters":[{"name":"skiff","cluster":{"server":"https://172.30.0.254:6443","certificate-authority-data":"Q0E="}}],
                "users":[{"name":"boot","user":{"token":"abcdef.0123456789abcdef"}}],
                "contexts":[{"name":"skiff","context":{"cluster":"skiff","user":"boot"}}],
                "current-context":"skiff"}"#,
        )
        .unwrap();
        let node = kubeconfig(&bootstrap, Path::new("/s/n.crt"), Path::new("/s/n.key")).unwrap();
        assert_eq!(
            node["clusters"][0]["cluster"]["server"],
            "https://172.30.0.254:6443"
        );
        assert_eq!(
            node["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(node["users"][0]["user"]["client-certificate"], "/s/n.crt");
        assert!(node["users"][0]["user"].get("token").is_none());

        let written = dir.join("node.kubeconfig");
        write_private(&written, &node.to_string()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&written).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // It names a certificate file that does not exist: renew.
        assert!(needs_renewal(&written).unwrap());
        assert!(!needs_renewal(&bootstrap).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
