//! What a pod's PersistentVolumeClaims ask of its node (kube-scheduler's
//! VolumeBinding plugin): a bound claim's volume must be reachable from the
//! node (its node affinity); a claim whose class waits for its first
//! consumer is bound only after the scheduler picked a node for it, so the
//! pod waits until then; an unbound claim of any other class makes the pod
//! unschedulable until the binder binds it.

use serde_json::Value;

use crate::controllers::meta;
use crate::controllers::storage::{
    admits, class_of, pick_volume, selected_node, volume_name, waits_for_consumer,
};
use crate::kinds::LOCAL_PATH_PROVISIONER;

/// The cluster's claims, volumes and classes.
pub struct Storage {
    pub claims: Vec<Value>,
    pub volumes: Vec<Value>,
    pub classes: Vec<Value>,
}

/// Where a pod's claims leave it.
pub enum PodVolumes<'a> {
    /// It can go to a node that every `bound` volume admits and that can
    /// serve every claim in `unpicked`, which then get that node picked.
    Schedulable {
        bound: Vec<&'a Value>,
        unpicked: Vec<&'a Value>,
    },
    /// A node was picked for a claim that is not bound yet: wait for it.
    Waiting,
    /// It cannot go anywhere, for this reason.
    Blocked(String),
}

impl Storage {
    /// What the pod's claims ask.
    pub fn for_pod(&self, pod: &Value) -> PodVolumes<'_> {
        let namespace = meta::namespace(pod);
        let mut bound = Vec::new();
        let mut unpicked = Vec::new();
        for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let Some(name) = volume["persistentVolumeClaim"]["claimName"].as_str() else {
                continue;
            };
            let Some(claim) = self
                .claims
                .iter()
                .find(|claim| meta::namespace(claim) == namespace && meta::name(claim) == name)
            else {
                return PodVolumes::Blocked(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if meta::is_terminating(claim) {
                return PodVolumes::Blocked(format!(
                    "persistentvolumeclaim \"{name}\" is being deleted"
                ));
            }
            match volume_name(claim) {
                Some(volume_name) => match self
                    .volumes
                    .iter()
                    .find(|volume| meta::name(volume) == volume_name)
                {
                    Some(volume) => bound.push(volume),
                    None => {
                        return PodVolumes::Blocked(format!(
                            "persistentvolume \"{volume_name}\" not found"
                        ));
                    }
                },
                None if !waits_for_consumer(claim, &self.classes) => {
                    return PodVolumes::Blocked(
                        "pod has unbound immediate PersistentVolumeClaims".to_owned(),
                    );
                }
                None if selected_node(claim).is_some() => return PodVolumes::Waiting,
                None => unpicked.push(claim),
            }
        }
        PodVolumes::Schedulable { bound, unpicked }
    }

    /// Whether `node` can serve an unbound claim: a free volume there fits
    /// it, or the local-path provisioner can make one.
    pub fn can_serve(&self, claim: &Value, node: &Value) -> bool {
        class_of(claim, &self.classes)
            .is_some_and(|class| class["provisioner"] == LOCAL_PATH_PROVISIONER)
            || pick_volume(claim, &self.volumes, Some(node)).is_some()
    }
}

/// Whether every bound volume is reachable from `node`.
pub fn reachable(bound: &[&Value], node: &Value) -> bool {
    bound.iter().all(|volume| admits(volume, node))
}
