//! Encryption at rest, as kube-apiserver's `--encryption-provider-config`:
//! the values of the configured resources are sealed by the first provider
//! on every write and opened by whichever provider their prefix names on
//! every read, so values written with older keys (or before encryption,
//! with identity listed) still read until `skiff-control secrets
//! re-encrypt` rewrites them.

mod config;
mod error;
mod provider;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::path::Path;

pub use config::StoredResource;
pub use error::EncryptionError;
use provider::{ENCRYPTED_PREFIX, Provider};

/// The providers of each encrypted resource; resources not named are
/// stored as they are.
#[derive(Debug, Default)]
pub struct Encryption {
    /// etcd base with its trailing `/`, and its providers (the first writes).
    resources: Vec<(String, Vec<Provider>)>,
}

impl Encryption {
    /// Reads an EncryptionConfiguration; `stored` are the resources its
    /// names may stand for.
    pub fn load(path: &Path, stored: &[StoredResource]) -> Result<Self, EncryptionError> {
        let failed = |reason: String| EncryptionError::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
        Self::parse(&text, stored).map_err(failed)
    }

    pub fn parse(text: &str, stored: &[StoredResource]) -> Result<Self, String> {
        Ok(Self {
            resources: config::parse(text, stored)?,
        })
    }

    /// The etcd prefixes (with their trailing `/`) whose values are
    /// encrypted.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|(prefix, _)| prefix.as_str())
    }

    fn providers(&self, key: &[u8]) -> Option<&[Provider]> {
        self.resources
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix.as_bytes()))
            .map(|(_, providers)| providers.as_slice())
    }

    /// The stored form of `plain` at `key`.
    pub fn seal(&self, key: &str, plain: Vec<u8>) -> Vec<u8> {
        match self.providers(key.as_bytes()).and_then(<[Provider]>::first) {
            Some(writer) => writer.seal(key.as_bytes(), &plain),
            None => plain,
        }
    }

    /// The plain value of `stored` at `key`, opened by the provider its
    /// prefix names; never the stored bytes of an encrypted value.
    pub fn open<'a>(&self, key: &[u8], stored: &'a [u8]) -> Result<Cow<'a, [u8]>, EncryptionError> {
        let failed = |reason: &str| EncryptionError::Decrypt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.to_owned(),
        };
        let Some(providers) = self.providers(key) else {
            return if stored.starts_with(ENCRYPTED_PREFIX) {
                Err(failed(
                    "the value is encrypted and --encryption-provider-config does not name this resource",
                ))
            } else {
                Ok(Cow::Borrowed(stored))
            };
        };
        match providers.iter().find(|provider| provider.wrote(stored)) {
            Some(provider) => provider.open(key, stored).map(Cow::Owned),
            None if stored.starts_with(ENCRYPTED_PREFIX) => Err(failed(
                "no provider in --encryption-provider-config has the key this value names",
            )),
            None => Err(failed(
                "the value is not encrypted and identity is not among the providers",
            )),
        }
    }

    /// Whether `stored` at `key` is already in the first provider's form.
    pub fn is_current(&self, key: &[u8], stored: &[u8]) -> bool {
        match self.providers(key).and_then(<[Provider]>::first) {
            Some(writer) => writer.wrote(stored),
            None => !stored.starts_with(ENCRYPTED_PREFIX),
        }
    }
}
