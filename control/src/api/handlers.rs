//! The verbs on collections, objects and subresources.

use http::Method;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::field_validation::FieldValidation;
use super::path::Target;
use super::query::Query;
use super::registry::{self, Resource, SYSTEM_NAMESPACES};
use super::selectors::{FieldSelector, LabelSelector};
use super::services::Holdings;
use super::status::{self, ApiError};
use super::{Api, ApiRequest, Reply};
use super::{objects, orphan, pods, scale, services, table};
use crate::patch::{self, PatchType};
use crate::store::{
    ListRequest, Preconditions, StoreError, collection_prefix, object_key, resource_version_of,
    same_object,
};
use crate::validation::{self, ServiceOptions};

/// One request on a resource.
pub struct Handler<'a> {
    pub api: &'a Api,
    pub target: Target,
    pub query: Query,
    pub request: ApiRequest,
}

/// Which part of the object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Main,
    Status,
}

fn json(code: u16, body: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Json {
        code,
        body,
        warnings: Vec::new(),
    })
}

impl Handler<'_> {
    pub async fn run(self) -> Result<Reply, ApiError> {
        let resource = self.target.resource;
        let method = self.request.method.clone();
        let name = self.target.name.clone();
        let subresource = self.target.subresource.clone();
        let is_pods = resource.is_core("Pod");
        // A dry run would be written for real: refuse it.
        if method != Method::GET && self.query.get("dryRun").is_some() {
            return Err(ApiError::bad_request(
                "dryRun is not supported by this server",
            ));
        }
        match (name, subresource.as_deref()) {
            (None, None) if method == Method::GET => {
                if self.query.flag("watch")? {
                    super::watch::start(self.api, &self.target, &self.query, self.table()).await
                } else {
                    self.list().await
                }
            }
            (None, None) if method == Method::POST => self.create().await,
            (Some(name), None) => match method {
                Method::GET => self.get(&name).await,
                Method::PUT => self.update(&name, Part::Main).await,
                Method::PATCH => self.patch(&name, Part::Main).await,
                Method::DELETE => self.delete(&name).await,
                other => Err(ApiError::method_not_allowed(other.as_str())),
            },
            (Some(name), Some("status")) if resource.status => match method {
                Method::GET => self.get(&name).await,
                Method::PUT => self.update(&name, Part::Status).await,
                Method::PATCH => self.patch(&name, Part::Status).await,
                other => Err(ApiError::method_not_allowed(other.as_str())),
            },
            (Some(name), Some("binding")) if is_pods && method == Method::POST => {
                self.bind(&name).await
            }
            (Some(name), Some("log")) if is_pods && method == Method::GET => {
                let namespace = self.target.namespace.clone().unwrap_or_default();
                let query = self.request.query.as_deref();
                self.api
                    .pod_log(&namespace, &name, self.query.get("container"), query)
                    .await
            }
            (Some(name), Some("scale")) if resource.scalable() => match method {
                Method::GET => self.get_scale(&name).await,
                Method::PUT | Method::PATCH => self.write_scale(&name).await,
                other => Err(ApiError::method_not_allowed(other.as_str())),
            },
            (_, Some(_)) => Err(ApiError::no_route()),
            _ => Err(ApiError::method_not_allowed(method.as_str())),
        }
    }

    /// Whether the client asked for a Table instead of the objects.
    fn table(&self) -> bool {
        table::wanted(self.request.accept.as_deref())
    }

    fn resource(&self) -> &'static Resource {
        self.target.resource
    }

    fn key(&self, name: &str) -> String {
        object_key(
            self.resource().storage,
            self.target.namespace.as_deref(),
            name,
        )
    }

    /// Read-modify-write of one object, retried when someone else wrote in
    /// between; `mutate` may refuse with an error. An unchanged object is
    /// not written. A Service's allocations are claimed before each attempt
    /// and given back when it fails.
    async fn write(
        &self,
        name: &str,
        part: Part,
        mut mutate: impl FnMut(Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let resource = self.resource();
        let key = self.key(name);
        let store_error = |error| ApiError::from_store(error, resource, name);
        let pools =
            (resource.is_core("Service") && part == Part::Main).then_some(&self.api.services);
        loop {
            let current = self.api.store.get(&key).await.map_err(store_error)?;
            let mut updated = mutate(current.clone())?;
            if same_object(&updated, &current) {
                return Ok(current);
            }
            let taken = match pools {
                Some(pools) => Some(pools.claim(Some(&current), &mut updated).await?),
                None => None,
            };
            let written = self
                .api
                .store
                .update(&key, &updated, resource_version_of(&current))
                .await;
            if let (Some(pools), Some(taken)) = (pools, &taken) {
                match &written {
                    Ok(stored) => pools.release_dropped(&current, Some(stored)).await,
                    Err(_) => {
                        // A concurrent write of this Service may hold some
                        // of it now: that stays.
                        let latest = self.api.store.get(&key).await.ok();
                        let held = latest.as_ref().map(Holdings::of).unwrap_or_default();
                        pools.give_back(&updated, &taken.without(&held)).await;
                    }
                }
            }
            match written {
                Err(StoreError::Conflict { .. }) => continue,
                written => return written.map_err(store_error),
            }
        }
    }

    /// The stored object `name`.
    async fn read(&self, name: &str) -> Result<Value, ApiError> {
        self.api
            .store
            .get(&self.key(name))
            .await
            .map_err(|error| ApiError::from_store(error, self.resource(), name))
    }

    async fn get(&self, name: &str) -> Result<Reply, ApiError> {
        let object = self.read(name).await?;
        if self.table() {
            let metadata = json!({ "resourceVersion": object["metadata"]["resourceVersion"] });
            return json(
                200,
                table::table(self.resource(), vec![object], metadata, objects::unix_now()),
            );
        }
        json(200, object)
    }

    async fn list(&self) -> Result<Reply, ApiError> {
        let resource = self.resource();
        let labels = LabelSelector::parse(self.query.get("labelSelector").unwrap_or_default())?;
        let fields = FieldSelector::parse(
            self.query.get("fieldSelector").unwrap_or_default(),
            resource,
        )?;
        let limit = self
            .query
            .number("limit")?
            .and_then(|limit| usize::try_from(limit).ok());
        let request = ListRequest {
            limit: limit.filter(|&limit| limit > 0),
            continue_token: self.query.get("continue"),
        };
        let prefix = collection_prefix(resource.storage, self.target.namespace.as_deref());
        let page = self
            .api
            .store
            .list(&prefix, request, |object| {
                labels.matches(object) && fields.matches(object)
            })
            .await
            .map_err(|error| ApiError::from_store(error, resource, ""))?;
        let mut metadata = json!({ "resourceVersion": page.revision.to_string() });
        if let Some(token) = page.continue_token {
            metadata["continue"] = json!(token);
        }
        if self.table() {
            return json(
                200,
                table::table(resource, page.items, metadata, objects::unix_now()),
            );
        }
        json(
            200,
            json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version(),
                "metadata": metadata,
                "items": page.items,
            }),
        )
    }

    /// Bodies of create, update and binding must be JSON: skiff speaks no
    /// protobuf, and says so instead of misreading the bytes.
    fn json_body(&self) -> Result<Value, ApiError> {
        if let Some(content_type) = &self.request.content_type {
            let media = content_type.split(';').next().unwrap_or_default().trim();
            if !matches!(media, "application/json" | "*/*" | "") {
                return Err(ApiError::unsupported_media_type(content_type));
            }
        }
        objects::parse_body(&self.request.body)
    }

    async fn create(&self) -> Result<Reply, ApiError> {
        let object = self.json_body()?;
        let fields = FieldValidation::from_query(&self.query)?;
        let (created, warnings) = self
            .api
            .create(
                self.resource(),
                self.target.namespace.as_deref(),
                object,
                fields,
            )
            .await?;
        Ok(Reply::Json {
            code: 201,
            body: created,
            warnings,
        })
    }

    async fn update(&self, name: &str, part: Part) -> Result<Reply, ApiError> {
        let resource = self.resource();
        let mut sent = self.json_body()?;
        objects::check_type(&mut sent, resource)?;
        objects::check_namespace(&mut sent, resource, self.target.namespace.as_deref())?;
        match sent["metadata"]["name"].as_str() {
            Some(given) if given == name => {}
            given => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    given.unwrap_or_default()
                )));
            }
        }
        let options = &self.api.service_options;
        let fields = FieldValidation::from_query(&self.query)?;
        let mut warnings = Vec::new();
        let expected = sent["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        let updated = self
            .write(name, part, |current| {
                if let Some(expected) = &expected
                    && current["metadata"]["resourceVersion"].as_str() != Some(expected)
                {
                    return Err(conflict(resource, name));
                }
                let (updated, dropped) =
                    apply_part(resource, part, sent.clone(), &current, options, fields)?;
                warnings = dropped;
                Ok(updated)
            })
            .await?;
        Ok(Reply::Json {
            code: 200,
            body: updated,
            warnings,
        })
    }

    async fn patch(&self, name: &str, part: Part) -> Result<Reply, ApiError> {
        let resource = self.resource();
        let content_type = self.request.content_type.as_deref().unwrap_or_default();
        let patch_type = PatchType::from_content_type(content_type)
            .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
        let options = &self.api.service_options;
        let fields = FieldValidation::from_query(&self.query)?;
        let mut warnings = Vec::new();
        let patch: Value = serde_json::from_slice(&self.request.body).map_err(|error| {
            ApiError::bad_request(format!("the patch is not valid JSON: {error}"))
        })?;
        let updated = self
            .write(name, part, |current| {
                let mut patched = current.clone();
                patch::apply(patch_type, &mut patched, &patch)
                    .map_err(|error| ApiError::bad_request(error.to_string()))?;
                if patched["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
                {
                    return Err(conflict(resource, name));
                }
                if patched["metadata"]["name"] != current["metadata"]["name"] {
                    return Err(ApiError::bad_request(
                        "metadata.name cannot be changed by a patch",
                    ));
                }
                objects::check_type(&mut patched, resource)?;
                let (updated, dropped) =
                    apply_part(resource, part, patched, &current, options, fields)?;
                warnings = dropped;
                Ok(updated)
            })
            .await?;
        Ok(Reply::Json {
            code: 200,
            body: updated,
            warnings,
        })
    }

    /// DELETE: removes the object, except that a pod a node runs is first
    /// marked terminating (see `pods`).
    async fn delete(&self, name: &str) -> Result<Reply, ApiError> {
        let resource = self.resource();
        let options = if self.request.body.is_empty() {
            Value::Null
        } else {
            objects::parse_body(&self.request.body)?
        };
        let field = |name: &str| options["preconditions"][name].as_str().map(str::to_owned);
        let preconditions = Preconditions {
            uid: field("uid"),
            resource_version: field("resourceVersion"),
        };
        let requested_grace = match options["gracePeriodSeconds"].as_i64() {
            Some(grace) => Some(grace),
            None => self
                .query
                .number("gracePeriodSeconds")?
                .map(|grace| grace as i64),
        };
        let store_error = |error| ApiError::from_store(error, resource, name);
        if resource.is_core("Namespace") {
            return self.delete_namespace(name, &preconditions).await;
        }
        if orphan::wanted(&options, self.query.get("propagationPolicy")) {
            let current = self.read(name).await?;
            preconditions.check(&current).map_err(store_error)?;
            self.api.orphan_dependents(&current).await?;
        }
        if resource.is_core("Pod") {
            let current = self
                .api
                .store
                .get(&self.key(name))
                .await
                .map_err(store_error)?;
            let grace = pods::grace_period(&current, requested_grace);
            if grace > 0 {
                let terminating = self
                    .write(name, Part::Main, |pod| {
                        preconditions.check(&pod).map_err(store_error)?;
                        Ok(pods::mark_terminating(pod, grace))
                    })
                    .await?;
                return json(200, terminating);
            }
        }
        let deleted = self
            .api
            .store
            .delete(&self.key(name), &preconditions)
            .await
            .map_err(store_error)?;
        if resource.is_core("Service") {
            self.api.services.release_dropped(&deleted, None).await;
        }
        json(
            200,
            status::deleted(resource, name, &deleted["metadata"]["uid"]),
        )
    }

    /// DELETE of a namespace only marks it Terminating: the namespace
    /// controller deletes what is in it, then the namespace. The system
    /// namespaces stay.
    async fn delete_namespace(
        &self,
        name: &str,
        preconditions: &Preconditions,
    ) -> Result<Reply, ApiError> {
        let resource = self.resource();
        if ["default", "kube-system", "kube-public"].contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let terminating = self
            .write(name, Part::Main, |mut namespace| {
                preconditions
                    .check(&namespace)
                    .map_err(|error| ApiError::from_store(error, resource, name))?;
                if namespace["metadata"]["deletionTimestamp"].is_null() {
                    namespace["metadata"]["deletionTimestamp"] = objects::now();
                }
                namespace["status"]["phase"] = json!("Terminating");
                Ok(namespace)
            })
            .await?;
        json(200, terminating)
    }

    async fn get_scale(&self, name: &str) -> Result<Reply, ApiError> {
        json(200, scale::of(&self.read(name).await?))
    }

    /// PUT or PATCH of `scale`: the Scale sent, or the current one patched,
    /// sets `spec.replicas`.
    async fn write_scale(&self, name: &str) -> Result<Reply, ApiError> {
        let resource = self.resource();
        let patch_type = if self.request.method == Method::PATCH {
            let content_type = self.request.content_type.as_deref().unwrap_or_default();
            Some(
                PatchType::from_content_type(content_type)
                    .ok_or_else(|| ApiError::unsupported_media_type(content_type))?,
            )
        } else {
            None
        };
        let sent: Value = serde_json::from_slice(&self.request.body).map_err(|error| {
            ApiError::bad_request(format!("the request body is not valid JSON: {error}"))
        })?;
        let updated = self
            .write(name, Part::Main, |current| {
                let mut wanted = scale::of(&current);
                match patch_type {
                    Some(patch_type) => patch::apply(patch_type, &mut wanted, &sent)
                        .map_err(|error| ApiError::bad_request(error.to_string()))?,
                    None => wanted = sent.clone(),
                }
                if let Some(version) = wanted["metadata"]["resourceVersion"].as_str()
                    && current["metadata"]["resourceVersion"].as_str() != Some(version)
                {
                    return Err(conflict(resource, name));
                }
                scale::apply(current, &wanted)
            })
            .await?;
        json(200, scale::of(&updated))
    }

    /// POST `pods/<name>/binding`: assigns the pod to a node, once.
    async fn bind(&self, name: &str) -> Result<Reply, ApiError> {
        let resource = self.resource();
        let binding = self.json_body()?;
        let node = binding["target"]["name"]
            .as_str()
            .filter(|node| !node.is_empty())
            .ok_or_else(|| ApiError::bad_request("the binding has no target.name"))?
            .to_owned();
        self.write(name, Part::Main, |mut pod| {
            match pod["spec"]["nodeName"].as_str() {
                Some(bound) if !bound.is_empty() => Err(ApiError::conflict(
                    resource,
                    name,
                    &format!("pod {name} is already assigned to node \"{bound}\""),
                )),
                _ => {
                    pod["spec"]["nodeName"] = json!(node);
                    Ok(pod)
                }
            }
        })
        .await?;
        json(
            201,
            json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
        )
    }
}

/// The object a write of `part` stores, validated, and the warnings about
/// fields dropped from it.
fn apply_part(
    resource: &Resource,
    part: Part,
    sent: Value,
    current: &Value,
    options: &ServiceOptions,
    fields: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut updated = match part {
        Part::Main => objects::merge_update(sent, current, resource)?,
        Part::Status => objects::merge_status(&sent, current),
    };
    let warnings = fields.apply(resource, &mut updated)?;
    Ok((
        validate(resource, updated, Some(current), options)?,
        warnings,
    ))
}

fn conflict(resource: &Resource, name: &str) -> ApiError {
    ApiError::conflict(
        resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// Kubernetes' defaulting and validation where skiff has them (Services):
/// the object to store, or a 422 naming the fields. On an update, what the
/// server allocated carries over from `old`.
fn validate(
    resource: &Resource,
    mut object: Value,
    old: Option<&Value>,
    options: &ServiceOptions,
) -> Result<Value, ApiError> {
    if !resource.is_core("Service") {
        return Ok(object);
    }
    validation::default_service(&mut object);
    if let Some(old) = old {
        services::carry_over(old, &mut object);
    }
    let decode = |value: &Value| {
        serde_json::from_value::<Service>(value.clone()).map_err(|error| {
            ApiError::bad_request(format!("the Service cannot be decoded: {error}"))
        })
    };
    let service = decode(&object)?;
    let errors = match old {
        Some(old) => validation::validate_service_update(&service, &decode(old)?, options),
        None => validation::validate_service(&service, options),
    };
    if errors.is_empty() {
        return Ok(object);
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    Err(ApiError::invalid(validation::invalid_status(
        resource.group,
        resource.kind,
        name,
        &errors,
    )))
}

impl Api {
    /// Creates `object` as a new `resource` in `namespace`: identity,
    /// defaults, validation and, for Services, allocations. Returns it with
    /// the warnings about fields dropped from it.
    pub(super) async fn create(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        mut object: Value,
        fields: FieldValidation,
    ) -> Result<(Value, Vec<String>), ApiError> {
        if resource.namespaced && namespace.is_none() {
            return Err(ApiError::method_not_allowed("POST"));
        }
        objects::check_type(&mut object, resource)?;
        objects::check_namespace(&mut object, resource, namespace)?;
        let warnings = fields.apply(resource, &mut object)?;
        let name = objects::prepare_create(&mut object, resource)?;
        if let Some(namespace) = namespace {
            self.require_namespace(namespace).await?;
        }
        let mut object = validate(resource, object, None, &self.service_options)?;
        let taken = if resource.is_core("Service") {
            Some(self.services.claim(None, &mut object).await?)
        } else {
            None
        };
        let key = object_key(resource.storage, namespace, &name);
        let created = self.store.create(&key, &object).await;
        if let (Err(_), Some(taken)) = (&created, &taken) {
            self.services.give_back(&object, taken).await;
        }
        let created = created.map_err(|error| ApiError::from_store(error, resource, &name))?;
        Ok((created, warnings))
    }

    /// A namespaced object may only be created in an existing namespace.
    async fn require_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        if SYSTEM_NAMESPACES.contains(&namespace) {
            return Ok(());
        }
        let namespaces =
            registry::find("", "v1", "namespaces").expect("namespaces are in the table");
        let current = self
            .store
            .get(&object_key(namespaces.storage, None, namespace))
            .await
            .map_err(|error| ApiError::from_store(error, namespaces, namespace))?;
        if current["metadata"]["deletionTimestamp"].is_null() {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        )))
    }
}
