//! List and watch of Ingresses, IngressClasses and Secrets straight from
//! etcd (skiff-etcd's list-then-watch, as the service proxy's), into a
//! cache of the records the proxy needs of them. Secrets have a watch of
//! their own: an etcd user that may not read them (the agents' role
//! grants no Secrets) has it fail and retry, with a warning each time,
//! while the routes are still served.
use std::collections::{BTreeMap, HashMap};

use skiff_etcd::keys::{INGRESS_CLASSES, INGRESSES, SECRETS, collection_prefix, parse_namespaced};
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::mpsc::Sender;

use super::objects::{ClassRecord, IngressRecord, ObjectRef, SecretRecord};

/// What a routes key names.
#[derive(Clone, Debug)]
pub enum Name {
    Ingress(ObjectRef),
    Class(String),
}

#[derive(Clone, Debug)]
pub enum Record {
    Ingress(IngressRecord),
    Class(ClassRecord),
}

/// What one of the two watches saw.
pub enum IngressEvent {
    Routes(Event<Name, Record>),
    Secrets(Event<ObjectRef, SecretRecord>),
}

impl From<Event<Name, Record>> for IngressEvent {
    fn from(event: Event<Name, Record>) -> Self {
        Self::Routes(event)
    }
}

impl From<Event<ObjectRef, SecretRecord>> for IngressEvent {
    fn from(event: Event<ObjectRef, SecretRecord>) -> Self {
        Self::Secrets(event)
    }
}

/// Follows the routes' prefixes and the Secrets' in the etcd at
/// `endpoints`; returns once `tx`'s receiver is gone.
pub async fn run(endpoints: Vec<String>, tx: Sender<IngressEvent>) {
    let routes = vec![
        collection_prefix(INGRESSES, None),
        collection_prefix(INGRESS_CLASSES, None),
    ];
    let secrets = vec![collection_prefix(SECRETS, None)];
    tokio::join!(
        ListWatch::new(endpoints.clone(), routes, Routes).run(tx.clone()),
        ListWatch::new(endpoints, secrets, Secrets).run(tx),
    );
}

struct Routes;

impl Decoder for Routes {
    type Key = Name;
    type Value = Record;

    fn key(&self, key: &[u8]) -> Option<Name> {
        if let Some((namespace, name)) = parse_namespaced(INGRESSES, key) {
            return Some(Name::Ingress(ObjectRef { namespace, name }));
        }
        let class = key.strip_prefix(collection_prefix(INGRESS_CLASSES, None).as_bytes())?;
        let class = std::str::from_utf8(class).ok()?;
        (!class.is_empty() && !class.contains('/')).then(|| Name::Class(class.to_owned()))
    }

    fn value(&self, key: &Name, value: &[u8], _: i64) -> Result<Record, serde_json::Error> {
        Ok(match key {
            Name::Ingress(id) => Record::Ingress(IngressRecord::from_json(id, value)?),
            Name::Class(_) => Record::Class(ClassRecord::from_json(value)?),
        })
    }
}

struct Secrets;

impl Decoder for Secrets {
    type Key = ObjectRef;
    type Value = SecretRecord;

    fn key(&self, key: &[u8]) -> Option<ObjectRef> {
        let (namespace, name) = parse_namespaced(SECRETS, key)?;
        Some(ObjectRef { namespace, name })
    }

    fn value(
        &self,
        _: &ObjectRef,
        value: &[u8],
        _: i64,
    ) -> Result<SecretRecord, serde_json::Error> {
        SecretRecord::from_json(value)
    }
}

/// The watched objects.
#[derive(Debug, Default)]
pub struct Objects {
    pub ingresses: BTreeMap<ObjectRef, IngressRecord>,
    pub classes: BTreeMap<String, ClassRecord>,
    pub secrets: HashMap<ObjectRef, SecretRecord>,
}

/// What an event changed, so the caller redoes only that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Ingresses or classes: the routes.
    pub routes: bool,
    /// Secrets (or the Ingresses naming them): the certificates.
    pub certificates: bool,
}

impl Objects {
    pub fn apply(&mut self, event: IngressEvent) -> Changed {
        match event {
            IngressEvent::Routes(event) => self.apply_routes(event),
            IngressEvent::Secrets(event) => self.apply_secrets(event),
        }
    }

    fn apply_routes(&mut self, event: Event<Name, Record>) -> Changed {
        // A resync replaces the view, even with nothing; a watch response
        // without changes is a progress report.
        let (changes, changed) = match event {
            Event::Resync { objects, .. } => {
                self.ingresses.clear();
                self.classes.clear();
                let puts = objects
                    .into_iter()
                    .map(|(name, record)| Change::Put(name, record));
                (puts.collect(), true)
            }
            Event::Changes { changes, .. } => {
                let changed = !changes.is_empty();
                (changes, changed)
            }
        };
        for change in changes {
            match change {
                Change::Put(Name::Ingress(id), Record::Ingress(record)) => {
                    self.ingresses.insert(id, record);
                }
                Change::Put(Name::Class(name), Record::Class(record)) => {
                    self.classes.insert(name, record);
                }
                Change::Put(name, _) => unreachable!("the decoder reads {name:?} as its own kind"),
                Change::Delete(Name::Ingress(id)) => {
                    self.ingresses.remove(&id);
                }
                Change::Delete(Name::Class(name)) => {
                    self.classes.remove(&name);
                }
            }
        }
        Changed {
            routes: changed,
            certificates: changed,
        }
    }

    fn apply_secrets(&mut self, event: Event<ObjectRef, SecretRecord>) -> Changed {
        match event {
            Event::Resync { objects, .. } => {
                self.secrets = objects.into_iter().collect();
                Changed {
                    routes: false,
                    certificates: true,
                }
            }
            Event::Changes { changes, .. } => {
                let mut certificates = false;
                for change in changes {
                    let id = match change {
                        Change::Put(id, record) => {
                            self.secrets.insert(id.clone(), record);
                            id
                        }
                        Change::Delete(id) => {
                            self.secrets.remove(&id);
                            id
                        }
                    };
                    certificates |= self.is_referenced(&id);
                }
                Changed {
                    routes: false,
                    certificates,
                }
            }
        }
    }

    /// Whether some Ingress names Secret `id` for TLS.
    fn is_referenced(&self, id: &ObjectRef) -> bool {
        self.ingresses
            .range(
                ObjectRef {
                    namespace: id.namespace.clone(),
                    name: String::new(),
                }..,
            )
            .take_while(|(ingress, _)| ingress.namespace == id.namespace)
            .any(|(_, ingress)| {
                ingress
                    .tls
                    .iter()
                    .any(|tls| tls.secret.as_deref() == Some(id.name.as_str()))
            })
    }
}
