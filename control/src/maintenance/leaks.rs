//! Giving back allocations no object holds, as kube-apiserver's ClusterIP
//! and NodePort repair controllers do. A record is leaked when a write
//! claimed a value and then failed without giving it back (etcd went away
//! between the two, the server was killed). A claim is made before its
//! object is written, so a record without an object may also be a create
//! in flight: like upstream, a record is released only when two passes in
//! a row find it leaked and unchanged, and the delete compares its
//! revision, so a record claimed again meanwhile stays.

use std::collections::{HashMap, HashSet};

use skiff_etcd::keys::{ALLOCATIONS, collection_prefix};
use skiff_etcd::kv::{Kv, Written};
use tracing::{info, warn};

use crate::alloc::{AllocError, Owner};

/// What one pass gave back: each record's key and the owner it named.
pub type Released = Vec<(String, Owner)>;

/// The records found leaked by the last pass, by key, at their revision.
#[derive(Debug, Default)]
pub struct Leaks {
    suspects: HashMap<String, i64>,
}

impl Leaks {
    /// One pass over every allocation record. `held` holds, for each value
    /// an object holds, the record's key and the holder's uid; it must be
    /// read after the records (so a claim followed by its object's write is
    /// never missed in between). A record neither held nor readable as an
    /// owner counts as leaked too.
    pub async fn pass(
        &mut self,
        kv: &Kv,
        held: &HashSet<(String, String)>,
        records: Vec<(String, i64, Option<Owner>)>,
    ) -> Result<Released, AllocError> {
        let mut suspects = HashMap::new();
        let mut released = Vec::new();
        for (key, revision, owner) in records {
            let holder_uid = owner.as_ref().map(|owner| owner.uid.clone());
            if holder_uid.is_some_and(|uid| held.contains(&(key.clone(), uid))) {
                continue;
            }
            if self.suspects.get(&key) != Some(&revision) {
                suspects.insert(key, revision);
                continue;
            }
            match kv.delete(&key, revision).await? {
                Written::Done { .. } => {
                    let owner = owner.unwrap_or_else(|| Owner::new("", "", ""));
                    info!(
                        key,
                        namespace = owner.namespace,
                        name = owner.name,
                        uid = owner.uid,
                        "released an allocation no Service holds"
                    );
                    released.push((key, owner));
                }
                // Changed or gone since it was read: a later pass decides.
                Written::Conflict | Written::Missing => {}
            }
        }
        self.suspects = suspects;
        Ok(released)
    }
}

/// Every allocation record of every pool: key, revision and owner (`None`
/// when the record cannot be read as one, which is logged).
pub async fn allocation_records(kv: &Kv) -> Result<Vec<(String, i64, Option<Owner>)>, AllocError> {
    let page = kv
        .list(&collection_prefix(ALLOCATIONS, None), PAGE_SIZE)
        .await?;
    Ok(page
        .entries
        .into_iter()
        .map(|entry| {
            let key = entry.key_str();
            let owner = serde_json::from_slice(&entry.value)
                .inspect_err(|error| warn!(key, %error, "an allocation record names no owner"))
                .ok();
            (key, entry.mod_revision, owner)
        })
        .collect())
}

/// Records read per round trip.
const PAGE_SIZE: i64 = 500;
