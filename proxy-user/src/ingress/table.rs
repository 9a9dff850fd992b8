//! The routes the proxy serves, built from the Ingresses of its class
//! (oldest first, so the oldest keeps a contested path, as in
//! ingress-nginx), and the backend pools they route to, kept resolved
//! against the agent's Service and EndpointSlice cache.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use tracing::{info, warn};

use crate::proxy::cluster::service_ref::ServiceRef;
use crate::proxy::cluster::state::ClusterState;

use super::backends::resolve;
use super::class::is_ours;
use super::objects::{BackendRef, IngressRecord, ObjectRef};
use super::pool::{Pool, Unavailable};
use super::routes::RouteTable;
use super::watch::Objects;
use crate::proxy::outlier::OutlierConfig;

/// What a route leads to: the Ingress that made it (named in error
/// bodies) and its backend's pool.
#[derive(Clone, Debug)]
pub struct Target {
    pub ingress: ObjectRef,
    pub pool: Arc<Pool>,
}

pub type Table = RouteTable<Target>;

/// The table the servers read, swapped whole on every rebuild.
#[derive(Debug, Default)]
pub struct Routes {
    current: RwLock<Arc<Table>>,
}

impl Routes {
    pub fn current(&self) -> Arc<Table> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, table: Table) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }
}

/// A backend as pools are keyed: the Ingress's namespace and its backend.
type BackendKey = (String, BackendRef);

/// The pools of every backend some served Ingress routes to.
#[derive(Debug, Default)]
pub struct Pools {
    pools: HashMap<BackendKey, Arc<Pool>>,
}

impl Pools {
    fn get(&mut self, namespace: &str, backend: &BackendRef) -> Arc<Pool> {
        let key = (namespace.to_owned(), backend.clone());
        self.pools
            .entry(key)
            .or_insert_with(|| {
                let name = match backend {
                    BackendRef::Service { name, port } => {
                        format!("service {namespace}/{name} port {port}")
                    }
                    BackendRef::Resource(resource) => format!("resource {namespace}/{resource}"),
                };
                Arc::new(Pool::new(name, OutlierConfig::default()))
            })
            .clone()
    }

    /// Resolves every pool against `cluster`, logging those that changed.
    pub fn refresh(&self, cluster: &ClusterState) {
        for ((namespace, backend), pool) in &self.pools {
            let resolved = match backend {
                BackendRef::Service { name, port } => {
                    let service = ServiceRef {
                        namespace: namespace.as_str().into(),
                        name: name.as_str().into(),
                    };
                    resolve(cluster, &service, port)
                }
                BackendRef::Resource(resource) => Err(Unavailable::Resource(resource.clone())),
            };
            if !pool.set(resolved) {
                continue;
            }
            match pool.unavailable() {
                None => {
                    info!(backend = %pool.name, endpoints = ?pool.endpoints(), "Ingress backend endpoints")
                }
                Some(why) => {
                    warn!(backend = %pool.name, reason = ?why, "Ingress backend has no endpoints; its routes answer 503")
                }
            }
        }
    }
}

/// The Ingresses of class `class`, oldest first.
pub fn served<'a>(objects: &'a Objects, class: &str) -> Vec<(&'a ObjectRef, &'a IngressRecord)> {
    let mut ours: Vec<_> = objects
        .ingresses
        .iter()
        .filter(|(_, ingress)| is_ours(&ingress.class, class, &objects.classes))
        .collect();
    ours.sort_by(|(a_id, a), (b_id, b)| (&a.created, a_id).cmp(&(&b.created, b_id)));
    ours
}

/// Builds the route table of `class`'s Ingresses, dropping the pools no
/// route uses any more, and publishes it.
pub fn rebuild(objects: &Objects, class: &str, pools: &mut Pools, routes: &Routes) {
    let mut table = Table::default();
    let mut used = Pools::default();
    let mut hosts_of: BTreeMap<&ObjectRef, Vec<&str>> = BTreeMap::new();
    for (id, ingress) in served(objects, class) {
        let mut target = |backend: &BackendRef| {
            let pool = pools.get(&id.namespace, backend);
            used.pools
                .insert((id.namespace.clone(), backend.clone()), pool.clone());
            Target {
                ingress: id.clone(),
                pool,
            }
        };
        for rule in &ingress.rules {
            for path in &rule.paths {
                table.add_path(
                    rule.host.as_deref(),
                    path.kind,
                    &path.path,
                    target(&path.backend),
                );
            }
        }
        if let Some(backend) = &ingress.default_backend {
            let default = target(backend);
            for rule in &ingress.rules {
                table.add_host_default(rule.host.as_deref(), default.clone());
            }
            table.set_default(default);
        }
        hosts_of.entry(id).or_default().extend(
            ingress
                .rules
                .iter()
                .map(|r| r.host.as_deref().unwrap_or("*")),
        );
    }
    *pools = used;
    let (hosts, paths) = table.size();
    info!(
        ingresses = hosts_of.len(),
        hosts,
        paths,
        ?hosts_of,
        "Ingress routes loaded"
    );
    routes.replace(table);
}
