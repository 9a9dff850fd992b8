//! The local-path provisioner (StorageClass provisioner
//! `skiff.io/local-path`): a claim of such a class with no volume to bind
//! gets a new PersistentVolume, reserved for it, that is the directory
//! `<--local-path-root>/<volume>` on one node: the node the scheduler
//! picked (WaitForFirstConsumer), else the first Ready node. The volume is
//! a hostPath of type DirectoryOrCreate, so the node's agent makes the
//! directory when a pod first mounts it, and a node affinity keeps every
//! pod using it on that node.
//!
//! A Released volume it made with reclaim policy Delete is removed: a
//! helper pod on its node (`--local-path-helper-image`, the root mounted)
//! deletes the directory, then the volume and the helper pod are deleted.
//! If the helper fails, the volume becomes Failed with the reason. Retain leaves the
//! volume (and its data) Released.

use std::path::Path;

use serde_json::{Value, json};
use tracing::info;

use super::client::written;
use super::kind::Kind;
use super::storage::{
    HOSTNAME_LABEL, class_of, pick_volume, pinned_node, selected_node, volume_name,
    waits_for_consumer,
};
use super::{Context, Controller, ControllerError, events, meta};
use crate::kinds::LOCAL_PATH_PROVISIONER;

pub struct LocalPathProvisioner;

/// Upstream's annotation naming who provisioned a volume.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Where the helper pods run.
const HELPER_NAMESPACE: &str = "kube-system";
/// Where a helper pod sees the root.
const HELPER_MOUNT: &str = "/storage";

impl Controller for LocalPathProvisioner {
    const NAME: &'static str = "local-path-provisioner";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let claims = context.cache.list(Kind::PersistentVolumeClaim);
        let volumes = context.cache.list(Kind::PersistentVolume);
        let classes = context.cache.list(Kind::StorageClass);
        let mut written_kinds = Vec::new();
        for claim in &claims {
            if provision(context, claim, &volumes, &classes).await? {
                written_kinds = vec![Kind::PersistentVolume];
            }
        }
        for volume in volumes.iter().filter(|volume| reclaimable(volume)) {
            if delete_volume(context, volume).await? {
                written_kinds = vec![Kind::PersistentVolume, Kind::Pod];
            }
        }
        Ok(written_kinds)
    }
}

/// The name of the volume provisioned for a claim, as upstream names it.
fn volume_name_for(claim: &Value) -> String {
    format!("pvc-{}", meta::uid(claim))
}

/// Makes a volume for the claim if it is this provisioner's, unbound, has
/// its node and no volume fits it.
async fn provision(
    context: &Context,
    claim: &Value,
    volumes: &[Value],
    classes: &[Value],
) -> Result<bool, ControllerError> {
    if meta::is_terminating(claim) || volume_name(claim).is_some() {
        return Ok(false);
    }
    let Some(class) =
        class_of(claim, classes).filter(|class| class["provisioner"] == LOCAL_PATH_PROVISIONER)
    else {
        return Ok(false);
    };
    let name = volume_name_for(claim);
    if volumes.iter().any(|volume| meta::name(volume) == name) {
        return Ok(false);
    }
    let Some(node) = node_for(context, claim, classes) else {
        return Ok(false);
    };
    if pick_volume(claim, volumes, Some(&node)).is_some() {
        return Ok(false);
    }
    let node = meta::name(&node);
    let path = Path::new(&context.config.local_path_root).join(&name);
    let volume = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": { PROVISIONED_BY: LOCAL_PATH_PROVISIONER },
        },
        "spec": {
            "capacity": { "storage": claim["spec"]["resources"]["requests"]["storage"] },
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
            "storageClassName": meta::name(class),
            "volumeMode": "Filesystem",
            "hostPath": { "path": path.to_string_lossy(), "type": "DirectoryOrCreate" },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": HOSTNAME_LABEL, "operator": "In", "values": [node] },
            ] }] } },
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": meta::namespace(claim),
                "name": meta::name(claim),
                "uid": meta::uid(claim),
            },
        },
    });
    let created = match context
        .client
        .create(Kind::PersistentVolume, None, &volume)
        .await
    {
        Ok(_) => true,
        Err(error) if error.code == 409 => false,
        Err(error) => return Err(error.into()),
    };
    if created {
        info!(
            claim = %format!("{}/{}", meta::namespace(claim), meta::name(claim)),
            volume = name,
            node,
            "provisioned"
        );
        let message = format!("Successfully provisioned volume {name} on node {node}");
        events::record(
            context,
            claim,
            "PersistentVolumeClaim",
            "Normal",
            "ProvisioningSucceeded",
            &message,
            LOCAL_PATH_PROVISIONER,
        )
        .await;
    }
    Ok(created)
}

/// The node a new volume for the claim goes to: the scheduler's pick when
/// its class waits for a consumer, else the first Ready node.
fn node_for(context: &Context, claim: &Value, classes: &[Value]) -> Option<Value> {
    if waits_for_consumer(claim, classes) {
        return context.cache.get(Kind::Node, None, selected_node(claim)?);
    }
    context
        .cache
        .list(Kind::Node)
        .into_iter()
        .find(|node| meta::condition(node, "Ready") == Some("True"))
}

/// A volume this provisioner made whose claim is gone and whose policy
/// deletes it.
fn reclaimable(volume: &Value) -> bool {
    volume["metadata"]["annotations"][PROVISIONED_BY] == LOCAL_PATH_PROVISIONER
        && !meta::is_terminating(volume)
        && volume["status"]["phase"] == "Released"
        && volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
}

fn helper_name(volume: &Value) -> String {
    format!("delete-{}", meta::name(volume))
}

/// One step of deleting the volume: start the helper pod, or, once it has
/// finished, remove the volume (or mark it Failed) and the helper.
async fn delete_volume(context: &Context, volume: &Value) -> Result<bool, ControllerError> {
    let Some(node) = pinned_node(volume) else {
        return Ok(false);
    };
    let name = helper_name(volume);
    let Some(helper) = context.cache.get(Kind::Pod, Some(HELPER_NAMESPACE), &name) else {
        let pod = helper_pod(volume, node, &name, &context.config.local_path_helper_image);
        return match context
            .client
            .create(Kind::Pod, Some(HELPER_NAMESPACE), &pod)
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.code == 409 => Ok(false),
            Err(error) => Err(error.into()),
        };
    };
    match helper["status"]["phase"].as_str() {
        Some("Succeeded") => {
            context
                .client
                .delete(Kind::PersistentVolume, volume, None)
                .await?;
            info!(volume = meta::name(volume), node, "deleted");
        }
        Some("Failed") => {
            let mut failed = volume.clone();
            failed["status"]["phase"] = json!("Failed");
            failed["status"]["message"] = json!(format!(
                "the helper pod {HELPER_NAMESPACE}/{name} could not delete the volume's directory on node {node}"
            ));
            written(
                context
                    .client
                    .update_status(Kind::PersistentVolume, &failed)
                    .await,
            )?;
        }
        _ => return Ok(false),
    }
    context.client.delete(Kind::Pod, &helper, Some(0)).await?;
    Ok(true)
}

/// The pod that deletes the volume's directory on its node.
fn helper_pod(volume: &Value, node: &str, name: &str, image: &str) -> Value {
    let directory = volume["spec"]["hostPath"]["path"]
        .as_str()
        .unwrap_or_default();
    let root = Path::new(directory).parent().map_or_else(
        || "/".to_owned(),
        |root| root.to_string_lossy().into_owned(),
    );
    let leaf = meta::name(volume);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": HELPER_NAMESPACE,
            "labels": { "app.kubernetes.io/managed-by": "skiff-local-path-provisioner" },
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{
                "name": "delete",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["rm", "-rf", format!("{HELPER_MOUNT}/{leaf}")],
                "volumeMounts": [{ "name": "root", "mountPath": HELPER_MOUNT }],
            }],
            "volumes": [{ "name": "root", "hostPath": { "path": root, "type": "DirectoryOrCreate" } }],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_removes_the_volume_directory_on_its_node() {
        let volume = json!({
            "metadata": { "name": "pvc-1" },
            "spec": { "hostPath": { "path": "/var/lib/skiff/storage/pvc-1" } },
        });
        let pod = helper_pod(&volume, "node2", "delete-pvc-1", "skiff/busybox");
        assert_eq!(pod["spec"]["nodeName"], "node2");
        assert_eq!(
            pod["spec"]["containers"][0]["command"],
            json!(["rm", "-rf", "/storage/pvc-1"])
        );
        assert_eq!(
            pod["spec"]["volumes"][0]["hostPath"]["path"],
            "/var/lib/skiff/storage"
        );
    }
}
