//! The admission plugins that look at other objects of the namespace, run
//! by the generic create and update paths after the kind's own strategy
//! (as kube-apiserver runs its plugins for every resource): LimitRanger
//! (`limits`), ServiceAccount (`serviceaccount`) and ResourceQuota
//! (`quota`, over `usage`).

pub mod limits;
pub mod quota;
pub mod serviceaccount;
pub mod usage;

use serde_json::Value;
use skiff_etcd::keys;

use crate::kinds::Refusal;
use crate::store::{Store, StoreError, collection_prefix, object_key, resource_version_of};

/// How often a charge is tried again when another write changed a quota
/// in between.
const CHARGE_ATTEMPTS: usize = 16;

/// What is admitted: an object of `plural` in `group`, named `name`, in
/// `namespace`.
pub struct Subject<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Subject<'_> {
    fn is(&self, plural: &str) -> bool {
        self.group.is_empty() && self.plural == plural
    }

    /// kube-apiserver's admission refusal: `pods "x" is forbidden: ...`.
    fn forbidden(&self, why: &str) -> Refusal {
        let resource = if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        };
        Refusal::Forbidden(format!("{resource} \"{}\" is forbidden: {why}", self.name))
    }
}

async fn list(store: &Store, base: &str, namespace: &str) -> Result<Vec<Value>, Refusal> {
    store
        .list(
            &collection_prefix(base, Some(namespace)),
            Default::default(),
            |_| true,
        )
        .await
        .map(|page| page.items)
        .map_err(Refusal::from)
}

/// Mutating admission of a new object: a pod's containers get the
/// namespace's LimitRange defaults, and its ServiceAccount's token.
pub async fn mutate(
    store: &Store,
    subject: &Subject<'_>,
    object: &mut Value,
) -> Result<(), Refusal> {
    if subject.is("pods") {
        let ranges = list(store, keys::LIMIT_RANGES, subject.namespace).await?;
        limits::default_pod(object, &ranges);
        admit_service_account(store, subject, object).await?;
    }
    Ok(())
}

/// The ServiceAccount plugin: the pod's account must exist; its token is
/// mounted unless automounting is off.
async fn admit_service_account(
    store: &Store,
    subject: &Subject<'_>,
    pod: &mut Value,
) -> Result<(), Refusal> {
    let name = serviceaccount::default_account(pod);
    let key = object_key(keys::SERVICE_ACCOUNTS, Some(subject.namespace), &name);
    // As kube's plugin: the default account of a new namespace is the
    // controller's to create, so it is looked up ten times, 100-200 ms
    // apart, before the pod is refused.
    let attempts = if name == serviceaccount::DEFAULT_SERVICE_ACCOUNT {
        10
    } else {
        1
    };
    let interval = std::time::Duration::from_millis(rand::random_range(100..200));
    let mut found = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(interval).await;
        }
        match store.get(&key).await {
            Ok(account) => {
                found = Some(account);
                break;
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let Some(account) = found else {
        return Err(subject.forbidden(&format!(
            "error looking up service account {}/{name}: serviceaccount \"{name}\" not found",
            subject.namespace
        )));
    };
    if serviceaccount::automounts(pod, &account) {
        serviceaccount::mount_token(pod, crate::validation::random_suffix);
    }
    Ok(())
}

/// Validating admission of a new object (`old` None) or of an update:
/// LimitRange min/max on new pods and claims, then the quota charge,
/// written to the quotas before the object is.
pub async fn validate(
    store: &Store,
    subject: &Subject<'_>,
    old: Option<&Value>,
    object: &Value,
) -> Result<(), Refusal> {
    if old.is_none() && (subject.is("pods") || subject.is("persistentvolumeclaims")) {
        let ranges = list(store, keys::LIMIT_RANGES, subject.namespace).await?;
        let errors = if subject.is("pods") {
            limits::check_pod(object, &ranges)
        } else {
            limits::check_claim(object, &ranges)
        };
        if !errors.is_empty() {
            return Err(subject.forbidden(&limits::aggregate(&errors)));
        }
    }
    if let Some(old) = old
        && !usage::grows(subject.group, subject.plural, old, object)
    {
        return Ok(());
    }
    for _ in 0..CHARGE_ATTEMPTS {
        let quotas = list(store, keys::RESOURCE_QUOTAS, subject.namespace).await?;
        if quotas.is_empty() {
            return Ok(());
        }
        let writes = match quota::charge(&quotas, subject.group, subject.plural, old, object) {
            quota::Charge::Refuse(why) => return Err(subject.forbidden(&why)),
            quota::Charge::Write(writes) if writes.is_empty() => return Ok(()),
            quota::Charge::Write(writes) => writes,
        };
        let writes: Vec<(String, Value, i64)> = writes
            .into_iter()
            .map(|quota| {
                let name = quota["metadata"]["name"].as_str().unwrap_or_default();
                let key = object_key(keys::RESOURCE_QUOTAS, Some(subject.namespace), name);
                let revision = resource_version_of(&quota);
                (key, quota, revision)
            })
            .collect();
        match store.update_all(&writes).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Refusal::Internal(
        "the quotas kept changing while being charged; try again".into(),
    ))
}
