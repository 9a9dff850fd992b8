//! List and watch of Ingresses and IngressClasses straight from etcd
//! (skiff-etcd's list-then-watch, as the service proxy's), into a cache of
//! the records the proxy needs of them, beside the TLS Secrets read through
//! the API server (`tls_secrets`).
use std::collections::{BTreeMap, HashMap};

use skiff_etcd::keys::{INGRESS_CLASSES, INGRESSES, collection_prefix, parse_namespaced};
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::mpsc::Sender;

use super::objects::{ClassRecord, IngressRecord, ObjectRef, SecretRecord};

/// What a key names.
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

pub type IngressEvent = Event<Name, Record>;

/// Follows the two prefixes in the etcd at `endpoints`; returns once
/// `tx`'s receiver is gone.
pub async fn run(endpoints: Vec<String>, tx: Sender<IngressEvent>) {
    let prefixes = vec![
        collection_prefix(INGRESSES, None),
        collection_prefix(INGRESS_CLASSES, None),
    ];
    ListWatch::new(endpoints, prefixes, Records).run(tx).await
}

struct Records;

impl Decoder for Records {
    type Key = Name;
    type Value = Record;

    fn key(&self, key: &[u8]) -> Option<Name> {
        let object = |(namespace, name)| ObjectRef { namespace, name };
        if let Some(ingress) = parse_namespaced(INGRESSES, key) {
            return Some(Name::Ingress(object(ingress)));
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

/// The watched objects, and the TLS Secrets last read.
#[derive(Debug, Default)]
pub struct Objects {
    pub ingresses: BTreeMap<ObjectRef, IngressRecord>,
    pub classes: BTreeMap<String, ClassRecord>,
    pub secrets: HashMap<ObjectRef, SecretRecord>,
}

/// What an event changed, so the caller redoes only that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Ingresses or classes: the routes, and the Secrets they name.
    pub routes: bool,
}

impl Objects {
    pub fn apply(&mut self, event: IngressEvent) -> Changed {
        match event {
            Event::Resync { objects, .. } => {
                self.ingresses.clear();
                self.classes.clear();
                for (name, record) in objects {
                    self.put(name, record);
                }
                Changed { routes: true }
            }
            Event::Changes { changes, .. } => {
                let mut changed = Changed::default();
                for change in changes {
                    let name = match change {
                        Change::Put(name, record) => {
                            self.put(name.clone(), record);
                            name
                        }
                        Change::Delete(name) => {
                            self.delete(&name);
                            name
                        }
                    };
                    match name {
                        Name::Ingress(_) | Name::Class(_) => changed.routes = true,
                    }
                }
                changed
            }
        }
    }

    fn put(&mut self, name: Name, record: Record) {
        match (name, record) {
            (Name::Ingress(id), Record::Ingress(record)) => {
                self.ingresses.insert(id, record);
            }
            (Name::Class(name), Record::Class(record)) => {
                self.classes.insert(name, record);
            }
            (name, _) => unreachable!("the decoder reads {name:?} as its own kind"),
        }
    }

    fn delete(&mut self, name: &Name) {
        match name {
            Name::Ingress(id) => {
                self.ingresses.remove(id);
            }
            Name::Class(name) => {
                self.classes.remove(name);
            }
        }
    }
}
