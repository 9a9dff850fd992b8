//! Encryption at rest for the local cluster: skiff-control's
//! `--encryption-provider-config`, made once with a random AES-GCM key
//! and kept in its PKI directory (readable by the owner only), so that
//! `backup` archives it with the CA and `restore` brings it back (without
//! the key the restored Secrets could not be read). Secrets stored before
//! it existed stay readable through the `identity` provider.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use skiff_tests::HarnessError;

/// AES-256: 32 bytes.
const KEY_BYTES: usize = 32;

/// Where the configuration lives in skiff-control's data directory.
pub fn path(control_data_dir: &Path) -> PathBuf {
    control_data_dir.join("pki").join("encryption-config.json")
}

/// skiff-control's flag for [`path`], written first when missing.
pub fn control_args(control_data_dir: &Path) -> Result<Vec<String>, HarnessError> {
    let path = path(control_data_dir);
    if !path.exists() {
        write(&path)?;
    }
    Ok(vec![format!(
        "--encryption-provider-config={}",
        path.display()
    )])
}

fn write(path: &Path) -> Result<(), HarnessError> {
    let failed = |what: &str, error: std::io::Error| {
        HarnessError::Environment(format!("{what} {}: {error}", path.display()))
    };
    let mut key = [0u8; KEY_BYTES];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .map_err(|e| failed("reading a key for", e))?;
    let document = serde_json::json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                { "aesgcm": { "keys": [{ "name": "key1", "secret": BASE64.encode(&key) }] } },
                { "identity": {} },
            ],
        }],
    });
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| failed("creating the directory of", e))?;
    }
    // Written aside and renamed: a crash never leaves half a key.
    let partial = path.with_extension("json.part");
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut file| {
            file.write_all(document.to_string().as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&partial, path))
        .map_err(|e| failed("writing", e))
}
