//! The agent's cache of the Services and EndpointSlices it balances, and of
//! its own Node (zone and eligibility), kept current from the cluster
//! watch, and the frontends each Service should have.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tracing::debug;

use super::frontends::{DesiredFrontend, HealthCheck, NodeRef, desired_frontends, health_check};
use super::records::{NodeRecord, ServiceRecord, SliceRecord};
use super::service_ref::ServiceRef;

/// An EndpointSlice's identity: namespace and name, as for a Service.
pub type SliceRef = ServiceRef;

/// One change to a watched object.
#[derive(Clone, Debug)]
pub enum ObjectChange {
    ServiceUpsert(ServiceRef, ServiceRecord),
    ServiceDelete(ServiceRef),
    SliceUpsert(SliceRef, SliceRecord),
    SliceDelete(SliceRef),
    /// This agent's own Node.
    NodeUpsert(NodeRecord),
    NodeDelete,
}

/// Services by reference, and EndpointSlices grouped by the Service their
/// `kubernetes.io/service-name` label names.
#[derive(Debug, Default)]
pub struct ClusterState {
    services: BTreeMap<ServiceRef, ServiceRecord>,
    /// Slices of each Service, with their names. A group may exist before
    /// its Service does (the two are written independently). A list, not
    /// a map: most Services have one slice, and a map node would cost more
    /// than the slice.
    slices: HashMap<ServiceRef, Vec<(Arc<str>, SliceRecord)>>,
    /// The group each slice is in, because a delete carries only the slice's
    /// key and a relabelled slice must leave its old group.
    slice_owner: HashMap<SliceRef, ServiceRef>,
    /// This agent's own Node; the default (no zone) while it has none.
    node: NodeRecord,
}

impl ClusterState {
    /// Applies one change. Returns the Services whose frontends may differ
    /// now: none, one, or two when a slice moved between Services. Only
    /// Services that exist (or, for a delete, just stopped existing) are
    /// returned: a slice without its Service changes nothing.
    pub fn apply(&mut self, change: ObjectChange) -> BTreeSet<ServiceRef> {
        let mut affected = match change {
            ObjectChange::ServiceUpsert(svc, service) => {
                self.services.insert(svc.clone(), service);
                return BTreeSet::from([svc]);
            }
            ObjectChange::ServiceDelete(svc) => {
                let existed = self.services.remove(&svc).is_some();
                return existed.then_some(svc).into_iter().collect();
            }
            ObjectChange::SliceUpsert(key, slice) => self.upsert_slice(key, slice),
            ObjectChange::SliceDelete(key) => self.remove_slice(&key).into_iter().collect(),
            ObjectChange::NodeUpsert(node) => return self.set_node(node),
            ObjectChange::NodeDelete => return self.set_node(NodeRecord::default()),
        };
        affected.retain(|svc| self.services.contains_key(svc));
        affected
    }

    /// The frontends of `svc` as node `node` serves them; empty when there
    /// is no such Service.
    pub fn desired(&self, svc: &ServiceRef, node: NodeRef<'_>) -> Vec<DesiredFrontend> {
        let Some(service) = self.services.get(svc) else {
            return Vec::new();
        };
        desired_frontends(svc, service, &self.slices_of(svc), node)
    }

    /// The health check the Service asks this node to answer, if any.
    pub fn health_check(&self, svc: &ServiceRef, node: NodeRef<'_>) -> Option<HealthCheck> {
        health_check(self.services.get(svc)?, &self.slices_of(svc), node)
    }

    /// This node's zone, if its Node has one.
    pub fn zone(&self) -> Option<&str> {
        self.node.zone.as_deref()
    }

    /// Keeps this node's record; every Service when its zone changed (the
    /// topology hints then choose other endpoints). Its eligibility
    /// changes no frontend: only `/healthz` reports it.
    fn set_node(&mut self, node: NodeRecord) -> BTreeSet<ServiceRef> {
        let zone_changed = node.zone != self.node.zone;
        self.node = node;
        if !zone_changed {
            return BTreeSet::new();
        }
        self.services.keys().cloned().collect()
    }

    /// The record of `svc`, if it exists.
    pub fn service(&self, svc: &ServiceRef) -> Option<&ServiceRecord> {
        self.services.get(svc)
    }

    /// The EndpointSlices labelled for `svc`.
    pub fn slices_of(&self, svc: &ServiceRef) -> Vec<&SliceRecord> {
        self.slices
            .get(svc)
            .into_iter()
            .flatten()
            .map(|(_, slice)| slice)
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
        services: Vec<(ServiceRef, ServiceRecord)>,
        slices: Vec<(SliceRef, SliceRecord)>,
        node: Option<NodeRecord>,
    ) -> BTreeSet<ServiceRef> {
        let mut affected: BTreeSet<ServiceRef> = self.services.keys().cloned().collect();
        *self = Self {
            node: node.unwrap_or_default(),
            ..Self::default()
        };
        affected.extend(services.iter().map(|(svc, _)| svc.clone()));
        self.services = services.into_iter().collect();
        for (key, slice) in slices {
            self.upsert_slice(key, slice);
        }
        affected
    }

    /// Files a slice under the Service its label names, taking it out of the
    /// group it was in. Returns the old and the new group's Service.
    fn upsert_slice(&mut self, key: SliceRef, slice: SliceRecord) -> BTreeSet<ServiceRef> {
        let mut groups: BTreeSet<ServiceRef> = self.remove_slice(&key).into_iter().collect();
        match slice.service.clone() {
            Some(name) => {
                let owner = ServiceRef {
                    namespace: key.namespace.clone(),
                    name,
                };
                let group = self.slices.entry(owner.clone()).or_default();
                // Exactly one more: a first push would reserve room for
                // four slices, three of them never used by most Services.
                group.reserve_exact(1);
                group.push((key.name.clone(), slice));
                self.slice_owner.insert(key, owner.clone());
                groups.insert(owner);
            }
            None => debug!(
                slice = %key,
                "ignoring EndpointSlice without a service-name label"
            ),
        }
        groups
    }

    /// Takes a slice out of its group; returns the group's Service.
    fn remove_slice(&mut self, key: &SliceRef) -> Option<ServiceRef> {
        let owner = self.slice_owner.remove(key)?;
        if let Some(group) = self.slices.get_mut(&owner) {
            group.retain(|(name, _)| *name != key.name);
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
    use crate::proxy::cluster::frontends::BackendAddr;
    use crate::proxy::cluster::records::SERVICE_NAME_LABEL;
    use serde_json::json;

    fn service(name: &str, ip: &str) -> (ServiceRef, ServiceRecord) {
        let json = json!({
            "metadata": { "namespace": "default", "name": name },
            "spec": { "clusterIP": ip, "ports": [{ "port": 80 }] },
        });
        let record = ServiceRecord::from_json(&svc(name), json.to_string().as_bytes()).unwrap();
        (svc(name), record)
    }

    fn slice(name: &str, owner: Option<&str>, ip: &str) -> (SliceRef, SliceRecord) {
        let labels = owner.map(|o| json!({ SERVICE_NAME_LABEL: o }));
        let json = json!({
            "metadata": { "namespace": "default", "name": name, "labels": labels },
            "addressType": "IPv4",
            "ports": [{ "port": 8080 }],
            "endpoints": [{ "addresses": [ip] }],
        });
        let record = SliceRecord::from_json(&svc(name), json.to_string().as_bytes()).unwrap();
        (svc(name), record)
    }

    fn put_service(name: &str, ip: &str) -> ObjectChange {
        let (svc, record) = service(name, ip);
        ObjectChange::ServiceUpsert(svc, record)
    }

    fn put_slice(name: &str, owner: Option<&str>, ip: &str) -> ObjectChange {
        let (key, record) = slice(name, owner, ip);
        ObjectChange::SliceUpsert(key, record)
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
                ip6: None,
                local_dns: None,
                zone: None,
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

    /// The cache holds one of these per Service, slice and endpoint: at
    /// 100 000 Services every byte added to one is 0.1 to 0.6 MB of the
    /// agent's memory. A change here is a decision: measure the scale
    /// sweep's RSS, then update the sizes.
    #[test]
    fn cached_entries_keep_their_size() {
        use super::super::records::EndpointAddr;
        use std::mem::size_of;
        assert_eq!(size_of::<(Arc<str>, SliceRecord)>(), 120);
        assert_eq!(size_of::<EndpointAddr>(), 30);
        // 224 since the IPv6 load balancer and external IP lists (2 × 16 B,
        // 3.2 MB at 100 000 Services).
        assert_eq!(size_of::<ServiceRecord>(), 224);
    }

    #[test]
    fn a_services_slices_take_no_more_room_than_they_need() {
        let mut state = ClusterState::default();
        let (web, web_slice) = slice("web-a", Some("web"), "10.244.1.2");
        state.replace_all(
            vec![service("web", "10.96.0.10")],
            vec![(web, web_slice)],
            None,
        );
        let group = |state: &ClusterState| {
            let group = &state.slices[&svc("web")];
            (group.len(), group.capacity())
        };
        assert_eq!(group(&state), (1, 1));
        state.apply(put_slice("web-b", Some("web"), "10.244.1.3"));
        assert_eq!(group(&state), (2, 2));
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
        let affected = state.apply(ObjectChange::SliceDelete(svc("web-a")));
        assert_eq!(affected, set(&["web"]));
        assert_eq!(backend_ips(&state, "web"), Vec::<String>::new());
        // Deleting it again (a replayed event) changes nothing.
        let affected = state.apply(ObjectChange::SliceDelete(svc("web-a")));
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
                    ip: None,
                    ip6: None,
                    local_dns: None,
                    zone: None,
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
            None,
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
                    ip: None,
                    ip6: None,
                    local_dns: None,
                    zone: None,
                }
            ),
            vec![]
        );
    }

    #[test]
    fn a_zone_change_recomputes_every_service() {
        let mut state = ClusterState::default();
        state.apply(put_service("web", "10.96.0.10"));
        let in_a = NodeRecord {
            zone: Some("a".into()),
            eligible: true,
        };
        assert_eq!(
            state.apply(ObjectChange::NodeUpsert(in_a.clone())),
            set(&["web"])
        );
        assert_eq!(state.zone(), Some("a"));
        assert_eq!(
            state.apply(ObjectChange::NodeUpsert(in_a.clone())),
            set(&[])
        );
        let draining = NodeRecord {
            eligible: false,
            ..in_a
        };
        assert_eq!(state.apply(ObjectChange::NodeUpsert(draining)), set(&[]));
        assert_eq!(state.apply(ObjectChange::NodeDelete), set(&["web"]));
        assert_eq!(state.zone(), None);
    }
}
