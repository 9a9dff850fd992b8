//! One provider of an EncryptionConfiguration and kube-apiserver's stored
//! form for it: `k8s:enc:<provider>:v1:<key name>:` then, for aesgcm,
//! nonce ‖ ciphertext ‖ tag with the etcd key as additional data, and for
//! secretbox, nonce ‖ NaCl's sealed box. identity stores the plain value.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::consts::U12;
use rand::RngCore;

use super::error::EncryptionError;

/// What every encrypted value starts with (identity refuses to read it).
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

const AES_GCM_NONCE: usize = 12;
const SECRETBOX_NONCE: usize = 24;

/// An AES-GCM key of any size kube accepts.
enum AesGcmKey {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<AesGcm<Aes192, U12>>),
    Aes256(Box<Aes256Gcm>),
}

enum Cipher {
    AesGcm(AesGcmKey),
    Secretbox(Box<XSalsa20Poly1305>),
}

/// One key of one provider, or identity.
pub struct Provider {
    /// `k8s:enc:<provider>:v1:<key name>:`; empty for identity.
    prefix: Vec<u8>,
    cipher: Option<Cipher>,
}

/// Names the provider and key, never the key's bytes.
impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.is_empty() {
            true => f.write_str("identity"),
            false => f.write_str(&String::from_utf8_lossy(&self.prefix)),
        }
    }
}

impl Provider {
    pub fn identity() -> Self {
        Self {
            prefix: Vec::new(),
            cipher: None,
        }
    }

    /// An aesgcm key: 16, 24 or 32 bytes.
    pub fn aes_gcm(name: &str, secret: &[u8]) -> Result<Self, String> {
        let key = match secret.len() {
            16 => AesGcmKey::Aes128(Box::new(
                Aes128Gcm::new_from_slice(secret).map_err(|e| e.to_string())?,
            )),
            24 => AesGcmKey::Aes192(Box::new(
                AesGcm::<Aes192, U12>::new_from_slice(secret).map_err(|e| e.to_string())?,
            )),
            32 => AesGcmKey::Aes256(Box::new(
                Aes256Gcm::new_from_slice(secret).map_err(|e| e.to_string())?,
            )),
            other => {
                return Err(format!(
                    "aesgcm key {name:?} is {other} bytes; it must be 16, 24 or 32 bytes"
                ));
            }
        };
        Ok(Self::keyed("aesgcm", name, Cipher::AesGcm(key)))
    }

    /// A secretbox key: 32 bytes.
    pub fn secretbox(name: &str, secret: &[u8]) -> Result<Self, String> {
        if secret.len() != 32 {
            return Err(format!(
                "secretbox key {name:?} is {} bytes; it must be 32 bytes",
                secret.len()
            ));
        }
        let cipher = XSalsa20Poly1305::new_from_slice(secret).map_err(|e| e.to_string())?;
        Ok(Self::keyed(
            "secretbox",
            name,
            Cipher::Secretbox(Box::new(cipher)),
        ))
    }

    fn keyed(provider: &str, name: &str, cipher: Cipher) -> Self {
        Self {
            prefix: format!("k8s:enc:{provider}:v1:{name}:").into_bytes(),
            cipher: Some(cipher),
        }
    }

    /// Whether `stored` was written by this provider (identity: anything
    /// not encrypted).
    pub fn wrote(&self, stored: &[u8]) -> bool {
        if self.prefix.is_empty() {
            !stored.starts_with(ENCRYPTED_PREFIX)
        } else {
            stored.starts_with(&self.prefix)
        }
    }

    /// The stored form of `plain` at `key`.
    pub fn seal(&self, key: &[u8], plain: &[u8]) -> Vec<u8> {
        let Some(cipher) = &self.cipher else {
            return plain.to_vec();
        };
        let mut stored = self.prefix.clone();
        match cipher {
            Cipher::AesGcm(aes) => {
                let nonce = random::<AES_GCM_NONCE>();
                let payload = Payload {
                    msg: plain,
                    aad: key,
                };
                let sealed = match aes {
                    AesGcmKey::Aes128(c) => c.encrypt(&nonce.into(), payload),
                    AesGcmKey::Aes192(c) => c.encrypt(&nonce.into(), payload),
                    AesGcmKey::Aes256(c) => c.encrypt(&nonce.into(), payload),
                }
                .expect("AES-GCM seals any value below 64 GiB");
                stored.extend_from_slice(&nonce);
                stored.extend_from_slice(&sealed);
            }
            Cipher::Secretbox(secretbox) => {
                let nonce = random::<SECRETBOX_NONCE>();
                let sealed = secretbox
                    .encrypt(&nonce.into(), plain)
                    .expect("secretbox seals any value");
                stored.extend_from_slice(&nonce);
                stored.extend_from_slice(&sealed);
            }
        }
        stored
    }

    /// The plain value of `stored` (which this provider [wrote](Self::wrote)) at `key`.
    pub fn open(&self, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let failed = |reason: &str| EncryptionError::Decrypt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.to_owned(),
        };
        let Some(cipher) = &self.cipher else {
            return Ok(stored.to_vec());
        };
        let body = &stored[self.prefix.len()..];
        let opened = match cipher {
            Cipher::AesGcm(aes) => {
                if body.len() < AES_GCM_NONCE {
                    return Err(failed("the data was shorter than the required nonce size"));
                }
                let (nonce, sealed) = body.split_at(AES_GCM_NONCE);
                let payload = Payload {
                    msg: sealed,
                    aad: key,
                };
                let nonce = nonce.into();
                match aes {
                    AesGcmKey::Aes128(c) => c.decrypt(nonce, payload),
                    AesGcmKey::Aes192(c) => c.decrypt(nonce, payload),
                    AesGcmKey::Aes256(c) => c.decrypt(nonce, payload),
                }
            }
            Cipher::Secretbox(secretbox) => {
                if body.len() < SECRETBOX_NONCE {
                    return Err(failed("the stored data was shorter than the required size"));
                }
                let (nonce, sealed) = body.split_at(SECRETBOX_NONCE);
                secretbox.decrypt(nonce.into(), sealed)
            }
        };
        opened.map_err(|_| failed("message authentication failed"))
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}
