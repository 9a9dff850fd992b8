//! List and watch of Services, EndpointSlices and the agent's own Node
//! straight from etcd, in Kubernetes' own key layout, so the API server is
//! never on the datapath's update path. skiff-etcd's list-then-watch does the listing, watching,
//! re-listing and backoff; this maps what it reads to the agent's records.

use skiff_etcd::keys::{
    ENDPOINT_SLICES, NODES, SERVICES, collection_prefix, object_key, parse_namespaced,
};
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::mpsc::Sender;

use super::records::{NodeRecord, ServiceRecord, SliceRecord};
use super::service_ref::ServiceRef;
use super::state::{ObjectChange, SliceRef};

/// What the cluster watch reports to the agent.
#[derive(Clone, Debug)]
pub enum ClusterEvent {
    /// Everything etcd holds at `revision`. Sent on start and after every
    /// reconnect: the consumer replaces its whole view (events may have been
    /// missed in between).
    Resync {
        services: Vec<(ServiceRef, ServiceRecord)>,
        slices: Vec<(SliceRef, SliceRecord)>,
        /// This agent's Node; `None` while it is not registered.
        node: Option<NodeRecord>,
        revision: i64,
    },
    /// The changes of one watch response, in order; `revision` is that of
    /// the last one.
    Changes {
        changes: Vec<ObjectChange>,
        revision: i64,
        /// When the watch response arrived, so the consumer can measure
        /// how long a change takes to reach the datapath.
        received: std::time::Instant,
    },
}

/// Lists and then watches Services, EndpointSlices and the Node named
/// `node_name` in etcd at `endpoints`, sending what it sees to `tx`,
/// reconnecting and re-listing (with backoff) whenever etcd is unreachable
/// or the watch breaks. Returns only once `tx`'s receiver is gone.
pub async fn run(endpoints: Vec<String>, node_name: &str, tx: Sender<ClusterEvent>) {
    let records = Records::for_node(node_name);
    let prefixes = vec![
        collection_prefix(SERVICES, None),
        collection_prefix(ENDPOINT_SLICES, None),
        // Also matches longer names (`node10` for `node1`): `key` keeps
        // only this node's own key.
        records.node_key.clone(),
    ];
    ListWatch::new(endpoints, prefixes, records).run(tx).await
}

/// Which kind a key holds, and the object's namespace and name. (The
/// sibling `/registry/services/endpoints/` holds legacy Endpoints, which
/// are neither.)
#[derive(Clone, Debug, PartialEq, Eq)]
enum Name {
    Service(ServiceRef),
    Slice(SliceRef),
    /// The agent's own Node.
    Node,
}

/// An object as the agent keeps it, under the name its key gives it.
#[derive(Clone, Debug)]
enum Record {
    Service(ServiceRef, ServiceRecord),
    Slice(SliceRef, SliceRecord),
    Node(NodeRecord),
}

/// Reads Services, EndpointSlices and the agent's Node as its records.
struct Records {
    /// The key of the agent's own Node.
    node_key: String,
}

impl Records {
    fn for_node(node_name: &str) -> Self {
        Self {
            node_key: object_key(NODES, None, node_name),
        }
    }
}

impl Decoder for Records {
    type Key = Name;
    type Value = Record;

    fn key(&self, key: &[u8]) -> Option<Name> {
        let name = |(namespace, name): (String, String)| ServiceRef {
            namespace: namespace.into(),
            name: name.into(),
        };
        if key == self.node_key.as_bytes() {
            return Some(Name::Node);
        }
        if let Some(service) = parse_namespaced(SERVICES, key) {
            return Some(Name::Service(name(service)));
        }
        parse_namespaced(ENDPOINT_SLICES, key).map(|slice| Name::Slice(name(slice)))
    }

    /// The key is the object's identity in etcd (a DELETE carries nothing
    /// else), so the record is filed under it even if the stored metadata
    /// omits or contradicts it; otherwise its delete would miss.
    fn value(&self, key: &Name, value: &[u8], _: i64) -> Result<Record, serde_json::Error> {
        Ok(match key {
            Name::Service(name) => {
                Record::Service(name.clone(), ServiceRecord::from_json(name, value)?)
            }
            Name::Slice(name) => Record::Slice(name.clone(), SliceRecord::from_json(name, value)?),
            Name::Node => Record::Node(NodeRecord::from_json(value)?),
        })
    }
}

impl From<Event<Name, Record>> for ClusterEvent {
    fn from(event: Event<Name, Record>) -> Self {
        match event {
            Event::Resync { objects, revision } => {
                let mut services = Vec::new();
                let mut slices = Vec::new();
                let mut node = None;
                for (_, record) in objects {
                    match record {
                        Record::Service(name, service) => services.push((name, service)),
                        Record::Slice(name, slice) => slices.push((name, slice)),
                        Record::Node(record) => node = Some(record),
                    }
                }
                ClusterEvent::Resync {
                    services,
                    slices,
                    node,
                    revision,
                }
            }
            Event::Changes {
                changes,
                revision,
                received,
            } => ClusterEvent::Changes {
                changes: changes.into_iter().map(change_of).collect(),
                revision,
                received,
            },
        }
    }
}

/// The change a watch event stands for.
fn change_of(change: Change<Name, Record>) -> ObjectChange {
    match change {
        Change::Put(_, Record::Service(name, service)) => {
            ObjectChange::ServiceUpsert(name, service)
        }
        Change::Put(_, Record::Slice(name, slice)) => ObjectChange::SliceUpsert(name, slice),
        Change::Put(_, Record::Node(node)) => ObjectChange::NodeUpsert(node),
        Change::Delete(Name::Service(name)) => ObjectChange::ServiceDelete(name),
        Change::Delete(Name::Slice(name)) => ObjectChange::SliceDelete(name),
        Change::Delete(Name::Node) => ObjectChange::NodeDelete,
    }
}

/// The fuzz target `agent_records`' entry: a key and a value read as the
/// watch reads them.
#[cfg(fuzzing)]
pub fn decode(key: &[u8], value: &[u8]) {
    let records = Records::for_node("node1");
    if let Some(name) = records.key(key) {
        let _ = records.value(&name, value, 0);
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
