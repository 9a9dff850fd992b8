//! Rewriting every value of an encrypted resource with the first provider
//! (`skiff-control secrets re-encrypt`): what kube's `kubectl get -o json |
//! kubectl replace -f -` rotation does, done on etcd with one
//! compare-and-swap per key, so that it is safe while API servers write.

use skiff_etcd::kv::{Entry, KeyRange, Kv, Written};

use super::encryption::Encryption;
use super::error::StoreError;

/// Keys read per round trip.
const PAGE_SIZE: i64 = 500;

/// What happened to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reencrypted {
    Rewritten,
    AlreadyCurrent,
    /// Deleted while it was being rewritten.
    Gone,
}

/// How many keys under one prefix were rewritten and how many already
/// had the first provider's form.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReencryptSummary {
    pub rewritten: usize,
    pub already_current: usize,
}

/// Rewrites each value under `prefix` that is not in the first
/// provider's form, calling `progress` per key. A value another writer
/// changes meanwhile is read again (that writer used the server's
/// providers, maybe not this process's). A value that does not decrypt
/// stops the run: nothing is ever rewritten from ciphertext.
pub(super) async fn rewrite(
    kv: &Kv,
    encryption: &Encryption,
    prefix: &str,
    mut progress: impl FnMut(&str, Reencrypted),
) -> Result<ReencryptSummary, StoreError> {
    let mut summary = ReencryptSummary::default();
    let mut range = KeyRange::prefix(prefix);
    loop {
        let page = kv.page(&range, 0, Some(PAGE_SIZE)).await?;
        for entry in &page.entries {
            let outcome = rewrite_one(kv, encryption, entry.clone()).await?;
            match outcome {
                Reencrypted::Rewritten => summary.rewritten += 1,
                Reencrypted::AlreadyCurrent => summary.already_current += 1,
                Reencrypted::Gone => {}
            }
            progress(&entry.key_str(), outcome);
        }
        match page.entries.last() {
            Some(last) if page.more => range = range.after(&last.key),
            _ => return Ok(summary),
        }
    }
}

async fn rewrite_one(
    kv: &Kv,
    encryption: &Encryption,
    mut entry: Entry,
) -> Result<Reencrypted, StoreError> {
    let key = entry.key_str();
    loop {
        if encryption.is_current(&entry.key, &entry.value) {
            return Ok(Reencrypted::AlreadyCurrent);
        }
        let plain = encryption.open(&entry.key, &entry.value)?.into_owned();
        let sealed = encryption.seal(&key, plain);
        match kv.update(&key, sealed, entry.mod_revision).await? {
            Written::Done { .. } => return Ok(Reencrypted::Rewritten),
            Written::Missing => return Ok(Reencrypted::Gone),
            Written::Conflict => match kv.get(&key).await? {
                Some(current) => entry = current,
                None => return Ok(Reencrypted::Gone),
            },
        }
    }
}
