//! Storage kinds: PersistentVolumes (cluster scoped), PersistentVolumeClaims
//! and `storage.k8s.io/v1` StorageClasses, with kube-apiserver's defaults
//! and validation for the volume sources skiff serves (hostPath, local). A
//! claim created without a class gets the default class, as the
//! `DefaultStorageClass` admission plugin does.

mod claim;
mod class;
mod fields;

mod volume;

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{BoxFuture, Strategy, Subresource};

pub use class::{DEFAULT_CLASS_ANNOTATION, default_class};

/// The default StorageClass and the provisioner that serves it (the
/// controllers' local-path provisioner).
pub const LOCAL_PATH_CLASS: &str = "local-path";
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.io/local-path";
/// Where the scheduler writes the node it picked for a claim whose class
/// binds on the first consumer.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";

/// The finalizers that keep a claim while a pod uses it and a volume while
/// it is bound (upstream's StorageObjectInUseProtection admission adds them
/// on create; the protection controller removes them).
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let finalizers = &mut object["metadata"]["finalizers"];
    match finalizers.as_array_mut() {
        Some(list) if list.iter().any(|f| f == finalizer) => {}
        Some(list) => list.push(json!(finalizer)),
        None => *finalizers = json!([finalizer]),
    }
}

#[derive(Debug)]
pub struct PersistentVolumeStrategy;

impl Strategy for PersistentVolumeStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn initial_status(&self) -> Option<Value> {
        Some(json!({ "phase": "Pending" }))
    }

    fn prepare_for_create(&self, volume: &mut Value) {
        volume::default_volume(volume);
        add_finalizer(volume, PV_PROTECTION);
    }

    fn prepare_for_update(&self, volume: &mut Value, _old: &Value) {
        volume::default_volume(volume);
    }

    fn validate(&self, _env: &Env, volume: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(volume::validate(volume)?)
    }

    fn validate_update(&self, _env: &Env, volume: &Value, old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(volume::validate_update(volume, old)?)
    }
}

#[derive(Debug)]
pub struct PersistentVolumeClaimStrategy;

impl Strategy for PersistentVolumeClaimStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn initial_status(&self) -> Option<Value> {
        Some(json!({ "phase": "Pending" }))
    }

    fn admit<'a>(
        &'a self,
        env: &'a Env,
        claim: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            // Only an absent class is defaulted: "" asks for no class.
            if claim["spec"]
                .get("storageClassName")
                .is_some_and(|c| !c.is_null())
            {
                return Ok(());
            }
            let classes = env.list(skiff_etcd::keys::STORAGE_CLASSES).await?;
            if let Some(class) = default_class(&classes) {
                claim["spec"]["storageClassName"] = json!(class);
            }
            Ok(())
        })
    }

    fn prepare_for_create(&self, claim: &mut Value) {
        claim::default_claim(claim);
        add_finalizer(claim, PVC_PROTECTION);
    }

    fn prepare_for_update(&self, claim: &mut Value, _old: &Value) {
        claim::default_claim(claim);
    }

    fn validate(&self, _env: &Env, claim: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(claim::validate(claim)?)
    }

    fn validate_update(&self, _env: &Env, claim: &Value, old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(claim::validate_update(claim, old)?)
    }
}

#[derive(Debug)]
pub struct StorageClassStrategy;

impl Strategy for StorageClassStrategy {
    fn prepare_for_create(&self, class: &mut Value) {
        class::default_class_fields(class);
    }

    fn prepare_for_update(&self, class: &mut Value, _old: &Value) {
        class::default_class_fields(class);
    }

    fn validate(&self, _env: &Env, class: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(class::validate(class)?)
    }

    fn validate_update(&self, _env: &Env, class: &Value, old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(class::validate_update(class, old)?)
    }
}
