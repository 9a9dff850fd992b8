//! Keeps every ResourceQuota's status current: `hard` as the spec says and
//! `used` recounted from the objects of its namespace each pass, which
//! also corrects what admission charged for writes that then failed and
//! gives back what deleted and finished objects held.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::client::written;
use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta};
use crate::admission::quota::{quantities, selects, to_list};
use crate::admission::usage::{Usage, charged_by, usage};
use crate::api::find_resource;
use crate::quantity::Quantity;
use crate::store::collection_prefix;

pub struct ResourceQuotas;

impl Controller for ResourceQuotas {
    const NAME: &'static str = "resourcequota";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut wrote = false;
        for quota in context.cache.list(Kind::ResourceQuota) {
            let hard = quantities(&quota["spec"]["hard"]);
            let used = count(context, &quota, &hard).await?;
            let mut updated = quota.clone();
            updated["status"] = json!({
                "hard": quota["spec"]["hard"].clone(),
                "used": to_list(&used),
            });
            if updated["status"] != quota["status"] {
                wrote |= written(
                    context
                        .client
                        .update_status(Kind::ResourceQuota, &updated)
                        .await,
                )?;
            }
        }
        Ok(if wrote {
            vec![Kind::ResourceQuota]
        } else {
            vec![]
        })
    }
}

/// What the objects of the quota's namespace use of each resource in
/// `hard`.
async fn count(context: &Context, quota: &Value, hard: &Usage) -> Result<Usage, ControllerError> {
    let namespace = meta::namespace(quota);
    let mut objects: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    let mut used = Usage::new();
    for name in hard.keys() {
        let Some((group, plural)) = charged_by(name) else {
            continue;
        };
        let key = (group, plural);
        if !objects.contains_key(&key) {
            let listed = match find_resource(&key.0, "v1", &key.1) {
                Some(resource) => {
                    let prefix = collection_prefix(resource.storage, Some(namespace));
                    let page = context
                        .cache
                        .store()
                        .list(&prefix, Default::default(), |_| true)
                        .await?;
                    page.items
                }
                None => Vec::new(),
            };
            objects.insert(key.clone(), listed);
        }
        let total = objects[&key]
            .iter()
            .filter(|object| selects(quota, &key.0, &key.1, object))
            .filter_map(|object| usage(&key.0, &key.1, object).get(name).copied())
            .sum::<Quantity>();
        used.insert(name.clone(), total);
    }
    Ok(used)
}
