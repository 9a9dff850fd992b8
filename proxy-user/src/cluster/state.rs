//! The agent's cache of the Services and EndpointSlices it balances, kept
//! current from the etcd watch, and the frontends each Service should have.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tracing::debug;

use super::frontends::{
    DesiredFrontend, HealthCheck, NodeRef, ServiceRef, desired_frontends, health_check,
};

/// One change to a watched object. Objects are boxed: a batch of changes
/// is mostly small deletes and a few large objects.
#[derive(Clone, Debug)]
pub enum ObjectChange {
    ServiceUpsert(Box<Service>),
    ServiceDelete(ServiceRef),
    SliceUpsert(Box<EndpointSlice>),
    SliceDelete { namespace: String, name: String },
}

/// An EndpointSlice's identity: namespace and name.
type SliceKey = (String, String);

/// Services by reference, and EndpointSlices grouped by the Service their
/// `kubernetes.io/service-name` label names.
#[derive(Debug, Default)]
pub struct ClusterState {
    services: BTreeMap<ServiceRef, Service>,
    /// Slices of each Service, by slice name. A group may exist before its
    /// Service does (the two are written independently).
    slices: HashMap<ServiceRef, BTreeMap<String, EndpointSlice>>,
    /// The group each slice is in, because a delete carries only the slice's
    /// key and a relabelled slice must leave its old group.
    slice_owner: HashMap<SliceKey, ServiceRef>,
}

impl ClusterState {
    /// Applies one change. Returns the Services whose frontends may differ
    /// now: none, one, or two when a slice moved between Services. Only
    /// Services that exist (or, for a delete, just stopped existing) are
    /// returned: a slice without its Service changes nothing.
    pub fn apply(&mut self, change: ObjectChange) -> BTreeSet<ServiceRef> {
        let mut affected = match change {
            ObjectChange::ServiceUpsert(service) => {
                return BTreeSet::from([self.upsert_service(*service)]);
            }
            ObjectChange::ServiceDelete(svc) => {
                let existed = self.services.remove(&svc).is_some();
                return existed.then_some(svc).into_iter().collect();
            }
            ObjectChange::SliceUpsert(slice) => self.upsert_slice(*slice),
            ObjectChange::SliceDelete { namespace, name } => {
                self.remove_slice(&(namespace, name)).into_iter().collect()
            }
        };
        affected.retain(|svc| self.services.contains_key(svc));
        affected
    }

    /// The frontends `svc` should have now; empty when there is no such
    /// Service.
    /// The frontends of `svc` as node `node` serves them.
    pub fn desired(&self, svc: &ServiceRef, node: NodeRef<'_>) -> Vec<DesiredFrontend> {
        let Some(service) = self.services.get(svc) else {
            return Vec::new();
        };
        desired_frontends(service, &self.slices_of(svc), node)
    }

    /// The health check the Service asks this node to answer, if any.
    pub fn health_check(&self, svc: &ServiceRef, node: NodeRef<'_>) -> Option<HealthCheck> {
        health_check(self.services.get(svc)?, &self.slices_of(svc), node)
    }

    fn slices_of(&self, svc: &ServiceRef) -> Vec<&EndpointSlice> {
        self.slices
            .get(svc)
            .into_iter()
            .flat_map(BTreeMap::values)
            .collect()
    }

    /// Every cached Service, in order.
    pub fn services(&self) -> impl Iterator<Item = &ServiceRef> {
        self.services.keys()
    }

    /// Replaces the whole cache with a fresh list. Returns every Service that
    /// existed before or after, so the caller recomputes each one: the list
    /// may follow a gap in the watch in which anything changed.
    pub fn replace_all(
        &mut self,
        services: Vec<Service>,
        slices: Vec<EndpointSlice>,
    ) -> BTreeSet<ServiceRef> {
        let mut affected: BTreeSet<ServiceRef> = self.services.keys().cloned().collect();
        *self = Self::default();
        for service in services {
            affected.insert(self.upsert_service(service));
        }
        for slice in slices {
            self.upsert_slice(slice);
        }
        affected
    }

    /// Stores a Service; returns its reference.
    fn upsert_service(&mut self, service: Service) -> ServiceRef {
        let svc = ServiceRef::of(&service);
        self.services.insert(svc.clone(), service);
        svc
    }

    /// Files a slice under the Service its label names, taking it out of the
    /// group it was in. Returns the old and the new group's Service.
    fn upsert_slice(&mut self, slice: EndpointSlice) -> BTreeSet<ServiceRef> {
        let key = (
            slice.metadata.namespace.clone().unwrap_or_default(),
            slice.metadata.name.clone().unwrap_or_default(),
        );
        let mut groups: BTreeSet<ServiceRef> = self.remove_slice(&key).into_iter().collect();
        match ServiceRef::owning(&slice) {
            Some(owner) => {
                self.slices
                    .entry(owner.clone())
                    .or_default()
                    .insert(key.1.clone(), slice);
                self.slice_owner.insert(key, owner.clone());
                groups.insert(owner);
            }
            None => debug!(
                namespace = %key.0,
                slice = %key.1,
                "ignoring EndpointSlice without a service-name label"
            ),
        }
        groups
    }

    /// Takes a slice out of its group; returns the group's Service.
    fn remove_slice(&mut self, key: &SliceKey) -> Option<ServiceRef> {
        let owner = self.slice_owner.remove(key)?;
        if let Some(group) = self.slices.get_mut(&owner) {
            group.remove(&key.1);
            if group.is_empty() {
                self.slices.remove(&owner);
            }
        }
        Some(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::frontends::{BackendAddr, SERVICE_NAME_LABEL};
    use serde_json::json;

    fn service(name: &str, ip: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": { "namespace": "default", "name": name },
            "spec": { "clusterIP": ip, "ports": [{ "port": 80 }] },
        }))
        .unwrap()
    }

    fn slice(name: &str, owner: Option<&str>, ip: &str) -> EndpointSlice {
        let labels = owner.map(|o| json!({ SERVICE_NAME_LABEL: o }));
        serde_json::from_value(json!({
            "metadata": { "namespace": "default", "name": name, "labels": labels },
            "addressType": "IPv4",
            "ports": [{ "port": 8080 }],
            "endpoints": [{ "addresses": [ip] }],
        }))
        .unwrap()
    }

    fn put_service(name: &str, ip: &str) -> ObjectChange {
        ObjectChange::ServiceUpsert(Box::new(service(name, ip)))
    }

    fn put_slice(name: &str, owner: Option<&str>, ip: &str) -> ObjectChange {
        ObjectChange::SliceUpsert(Box::new(slice(name, owner, ip)))
    }

    fn svc(name: &str) -> ServiceRef {
        ServiceRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn backend_ips(state: &ClusterState, name: &str) -> Vec<String> {
        let desired = state.desired(
            &svc(name),
            NodeRef {
                name: "node1",
                ip: None,
            },
        );
        assert_eq!(desired.len(), 1, "{name} should have one frontend");
        desired[0]
            .backends
            .iter()
            .map(|BackendAddr { ip, .. }| ip.to_string())
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<ServiceRef> {
        names.iter().map(|n| svc(n)).collect()
    }

    #[test]
    fn service_and_slices_combine_in_either_order() {
        let mut state = ClusterState::default();
        // The slice arrives first: nothing to recompute yet.
        assert_eq!(
            state.apply(put_slice("web-a", Some("web"), "10.244.1.1")),
            set(&[])
        );
        assert_eq!(state.apply(put_service("web", "10.96.0.10")), set(&["web"]));
        assert_eq!(
            state.apply(put_slice("web-b", Some("web"), "10.244.1.2")),
            set(&["web"])
        );
        assert_eq!(backend_ips(&state, "web"), ["10.244.1.1", "10.244.1.2"]);
        assert_eq!(state.services().collect::<Vec<_>>(), [&svc("web")]);
    }

    #[test]
    fn slice_update_replaces_and_delete_removes() {
        let mut state = ClusterState::default();
        state.apply(put_service("web", "10.96.0.10"));
        state.apply(put_slice("web-a", Some("web"), "10.244.1.1"));
        state.apply(put_slice("web-a", Some("web"), "10.244.1.9"));
        assert_eq!(backend_ips(&state, "web"), ["10.244.1.9"]);
        let affected = state.apply(ObjectChange::SliceDelete {
            namespace: "default".into(),
            name: "web-a".into(),
        });
        assert_eq!(affected, set(&["web"]));
        assert_eq!(backend_ips(&state, "web"), Vec::<String>::new());
        // Deleting it again (a replayed event) changes nothing.
        let affected = state.apply(ObjectChange::SliceDelete {
            namespace: "default".into(),
            name: "web-a".into(),
        });
        assert_eq!(affected, set(&[]));
    }

    #[test]
    fn relabelled_slice_moves_between_services() {
        let mut state = ClusterState::default();
        state.apply(put_service("web", "10.96.0.10"));
        state.apply(put_service("api", "10.96.0.11"));
        state.apply(put_slice("shared", Some("web"), "10.244.1.1"));
        let affected = state.apply(put_slice("shared", Some("api"), "10.244.1.1"));
        assert_eq!(affected, set(&["api", "web"]));
        assert_eq!(backend_ips(&state, "web"), Vec::<String>::new());
        assert_eq!(backend_ips(&state, "api"), ["10.244.1.1"]);

        // Losing the label takes it out of every group.
        let affected = state.apply(put_slice("shared", None, "10.244.1.1"));
        assert_eq!(affected, set(&["api"]));
        assert_eq!(backend_ips(&state, "api"), Vec::<String>::new());
    }

    #[test]
    fn unlabelled_slice_is_ignored() {
        let mut state = ClusterState::default();
        state.apply(put_service("web", "10.96.0.10"));
        let affected = state.apply(put_slice("manual", None, "10.244.1.1"));
        assert_eq!(affected, set(&[]));
        assert_eq!(backend_ips(&state, "web"), Vec::<String>::new());
    }

    #[test]
    fn deleted_service_has_no_frontends_and_keeps_its_slices_for_a_return() {
        let mut state = ClusterState::default();
        state.apply(put_service("web", "10.96.0.10"));
        state.apply(put_slice("web-a", Some("web"), "10.244.1.1"));
        assert_eq!(
            state.apply(ObjectChange::ServiceDelete(svc("web"))),
            set(&["web"])
        );
        assert_eq!(
            state.desired(
                &svc("web"),
                NodeRef {
                    name: "node1",
                    ip: None
                }
            ),
            vec![]
        );
        assert_eq!(state.services().count(), 0);
        assert_eq!(
            state.apply(ObjectChange::ServiceDelete(svc("web"))),
            set(&[])
        );
        state.apply(put_service("web", "10.96.0.10"));
        assert_eq!(backend_ips(&state, "web"), ["10.244.1.1"]);
    }

    #[test]
    fn replace_all_reports_services_before_and_after() {
        let mut state = ClusterState::default();
        state.apply(put_service("old", "10.96.0.1"));
        state.apply(put_service("kept", "10.96.0.2"));
        state.apply(put_slice("kept-a", Some("kept"), "10.244.1.1"));
        let affected = state.replace_all(
            vec![service("kept", "10.96.0.2"), service("new", "10.96.0.3")],
            vec![slice("new-a", Some("new"), "10.244.1.3")],
        );
        assert_eq!(affected, set(&["kept", "new", "old"]));
        assert_eq!(
            state.services().collect::<Vec<_>>(),
            [&svc("kept"), &svc("new")]
        );
        // The re-list had no slice for "kept": its old one is gone.
        assert_eq!(backend_ips(&state, "kept"), Vec::<String>::new());
        assert_eq!(backend_ips(&state, "new"), ["10.244.1.3"]);
        assert_eq!(
            state.desired(
                &svc("old"),
                NodeRef {
                    name: "node1",
                    ip: None
                }
            ),
            vec![]
        );
    }
}
