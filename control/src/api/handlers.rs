//! The verbs on collections, objects and subresources, the same for every
//! resource: what a kind does beyond them, its strategy does.

use http::Method;
use serde_json::{Value, json};

use super::field_manager;
use super::field_validation::FieldValidation;
use super::path::Target;
use super::query::Query;
use super::registry::{self, Resource, SYSTEM_NAMESPACES};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::{Api, ApiRequest, Reply};
use super::{media, objects, scale, table};
use crate::admission;
use crate::authz::RBAC_GROUP;
use crate::authz::escalation::{self, RbacWrite};
use crate::authz::node;
use crate::clock;
use crate::kinds::{Claim, Env, Refusal, Subresource};
use crate::patch::{self, Manager, Operation, PatchType};
use crate::store::{
    ListPage, ListRequest, Preconditions, StoreError, collection_prefix, object_key,
    resource_version_of, same_object,
};

/// One request on a resource.
pub struct Handler<'a> {
    pub api: &'a Api,
    pub target: Target,
    pub query: Query,
    pub request: ApiRequest,
}

/// Which part of the object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Main,
    Status,
    Finalize,
    Approval,
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
        // A dry run of a write would be written for real: refuse it. Only
        // DELETE knows how not to write.
        if ![Method::GET, Method::DELETE].contains(&method) && self.query.get("dryRun").is_some() {
            return Err(ApiError::bad_request(
                "dryRun is not supported by this server",
            ));
        }
        match (name, subresource.as_deref()) {
            (None, None) if method == Method::GET => {
                if self.query.flag("watch")? {
                    super::watch::start(
                        self.api,
                        &self.target,
                        &self.query,
                        self.table(),
                        media::prefers_protobuf(self.request.accept.as_deref()),
                    )
                    .await
                } else {
                    self.list().await
                }
            }
            (None, None) if method == Method::POST => self.create().await,
            (None, None) if method == Method::DELETE => self.delete_collection().await,
            (Some(name), None) => match method {
                Method::GET => self.get(&name).await,
                Method::PUT => self.update(&name, Part::Main).await,
                Method::PATCH if self.is_apply() => self.apply(&name).await,
                Method::PATCH => self.patch(&name, Part::Main).await,
                Method::DELETE => self.delete(&name).await,
                other => Err(ApiError::method_not_allowed(other.as_str())),
            },
            (Some(name), Some("status")) if resource.serves(Subresource::Status) => match method {
                Method::GET => self.get(&name).await,
                Method::PUT => self.update(&name, Part::Status).await,
                Method::PATCH => self.patch(&name, Part::Status).await,
                other => Err(ApiError::method_not_allowed(other.as_str())),
            },
            (Some(name), Some("approval")) if resource.serves(Subresource::Approval) => {
                match method {
                    Method::GET => self.get(&name).await,
                    Method::PUT => self.update(&name, Part::Approval).await,
                    Method::PATCH => self.patch(&name, Part::Approval).await,
                    other => Err(ApiError::method_not_allowed(other.as_str())),
                }
            }
            (Some(name), Some("finalize"))
                if resource.serves(Subresource::Finalize) && method == Method::PUT =>
            {
                self.finalize(&name).await
            }
            (Some(name), Some("binding"))
                if resource.serves(Subresource::Binding) && method == Method::POST =>
            {
                self.bind(&name).await
            }
            (Some(name), Some("token"))
                if resource.serves(Subresource::Token) && method == Method::POST =>
            {
                let namespace = self.target.namespace.clone().unwrap_or_default();
                let answer = self
                    .api
                    .request_token(&namespace, &name, self.json_body()?)
                    .await?;
                json(201, answer)
            }
            (Some(name), Some("log"))
                if resource.serves(Subresource::Log) && method == Method::GET =>
            {
                let namespace = self.target.namespace.clone().unwrap_or_default();
                let query = self.request.query.as_deref();
                self.api
                    .pod_log(&namespace, &name, self.query.get("container"), query)
                    .await
            }
            (Some(name), Some("scale")) if resource.serves(Subresource::Scale) => match method {
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

    /// Records who creates `object` where its kind keeps the requester.
    fn record_requester(&self, object: &mut Value) {
        if let Some(user) = &self.request.user {
            self.resource().strategy.record_requester(object, user);
        }
    }

    /// Whether a PATCH is a server-side apply.
    fn is_apply(&self) -> bool {
        patch::is_apply(self.request.content_type.as_deref().unwrap_or_default())
    }

    /// Who a write of `operation` on `part` by this request is recorded as.
    fn manager(&self, operation: Operation, part: Part) -> Manager {
        let subresource = match part {
            Part::Main => None,
            Part::Status => Some("status"),
            Part::Finalize => Some("finalize"),
            Part::Approval => Some("approval"),
        };
        field_manager::from_request(
            &self.query,
            self.request.user_agent.as_deref(),
            operation,
            subresource,
        )
    }

    fn resource(&self) -> &'static Resource {
        self.target.resource
    }

    pub(super) fn key(&self, name: &str) -> String {
        object_key(
            self.resource().storage,
            self.target.namespace.as_deref(),
            name,
        )
    }

    /// Read-modify-write of one object, retried when someone else wrote in
    /// between; `mutate` may refuse with an error. An unchanged object is
    /// not written. A write of the main resource claims what the object
    /// holds in the shared pools before each attempt, gives it back when the
    /// attempt fails and gives back what the old object no longer needs when
    /// it succeeds.
    pub(super) async fn write(
        &self,
        name: &str,
        part: Part,
        mut mutate: impl FnMut(Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let resource = self.resource();
        let strategy = resource.strategy;
        let env = &self.api.env;
        let key = self.key(name);
        let store_error = |error| ApiError::from_store(error, resource, name);
        loop {
            let current = self.api.store.get(&key).await.map_err(store_error)?;
            let mut updated = mutate(current.clone())?;
            if same_object(&updated, &current) {
                return Ok(current);
            }
            if part == Part::Main {
                self.check_escalation(&updated, Some(&current))?;
            }
            if part == Part::Main
                && let Some(namespace) = self.target.namespace.as_deref()
            {
                let subject = admission::Subject {
                    group: resource.group,
                    plural: resource.plural,
                    namespace,
                    name,
                };
                admission::validate(&self.api.store, &subject, Some(&current), &updated)
                    .await
                    .map_err(|refusal| ApiError::refused(refusal, resource, name))?;
            }
            let claim = match part {
                Part::Main => strategy
                    .allocate(env, Some(&current), &mut updated)
                    .await
                    .map_err(|refusal| ApiError::refused(refusal, resource, name))?,
                Part::Status | Part::Finalize | Part::Approval => Claim::Nothing,
            };
            let written = self
                .api
                .store
                .update(&key, &updated, resource_version_of(&current))
                .await;
            match &written {
                Ok(stored) if objects::finalized(&current, stored) => {
                    let only_this = Preconditions {
                        uid: stored["metadata"]["uid"].as_str().map(str::to_owned),
                        resource_version: None,
                    };
                    match self.api.store.delete(&key, &only_this).await {
                        Ok(_) | Err(StoreError::NotFound { .. }) => {}
                        Err(error) => return Err(store_error(error)),
                    }
                    strategy.release_dropped(env, &current, None).await;
                }
                Ok(stored) if part == Part::Main => {
                    strategy.release_dropped(env, &current, Some(stored)).await;
                }
                Err(_) if claim == Claim::Taken => {
                    let latest = self.api.store.get(&key).await.ok();
                    strategy
                        .release_unwritten(env, Some(&current), &updated, latest.as_ref())
                        .await;
                }
                _ => {}
            }
            match written {
                Err(StoreError::Conflict { .. }) => continue,
                written => return written.map_err(store_error),
            }
        }
    }

    /// The stored object `name`.
    pub(super) async fn read(&self, name: &str) -> Result<Value, ApiError> {
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
                table::table(self.resource(), vec![object], metadata, clock::unix_now()),
            );
        }
        json(200, object)
    }

    /// The objects of the URL's collection that the query's label and field
    /// selectors match, one page of them as `request` asks.
    pub(super) async fn select(&self, request: ListRequest<'_>) -> Result<ListPage, ApiError> {
        let resource = self.resource();
        let labels = LabelSelector::parse(self.query.get("labelSelector").unwrap_or_default())?;
        let fields = FieldSelector::parse(
            self.query.get("fieldSelector").unwrap_or_default(),
            resource,
        )?;
        let prefix = collection_prefix(resource.storage, self.target.namespace.as_deref());
        self.api
            .store
            .list(&prefix, request, |object| {
                labels.matches(object) && fields.matches(object)
            })
            .await
            .map_err(|error| ApiError::from_store(error, resource, ""))
    }

    async fn list(&self) -> Result<Reply, ApiError> {
        let resource = self.resource();
        let limit = self
            .query
            .number("limit")?
            .and_then(|limit| usize::try_from(limit).ok());
        let request = ListRequest {
            limit: limit.filter(|&limit| limit > 0),
            continue_token: self.query.get("continue"),
        };
        let page = self.select(request).await?;
        let mut metadata = json!({ "resourceVersion": page.revision.to_string() });
        if let Some(token) = page.continue_token {
            metadata["continue"] = json!(token);
        }
        if self.table() {
            return json(
                200,
                table::table(resource, page.items, metadata, clock::unix_now()),
            );
        }
        json(200, objects::list(resource, metadata, page.items))
    }

    /// Bodies of create, update and binding are JSON or Kubernetes'
    /// protobuf (what client-go sends by default), as JSON.
    fn json_body(&self) -> Result<Value, ApiError> {
        objects::decode_body(self.request.content_type.as_deref(), &self.request.body)
    }

    /// kube's RBAC storage: a user may only write a role, or a binding,
    /// granting what it holds itself (or may `escalate` or `bind`).
    fn check_escalation(&self, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        let resource = self.resource();
        let (Some(user), Some(authz)) = (&self.request.user, &self.api.authz) else {
            return Ok(());
        };
        if resource.group != RBAC_GROUP {
            return Ok(());
        }
        let write = RbacWrite {
            user,
            resource: resource.plural,
            namespace: self.target.namespace.as_deref().unwrap_or_default(),
            request_name: self.target.name.as_deref().unwrap_or_default(),
            object,
            old,
        };
        escalation::check(&authz.policy(), &write).map_err(|why| {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            ApiError::forbidden_on(resource.group, resource.plural, name, &why)
        })
    }

    /// NodeRestriction on a node's create: the name it creates, which
    /// the authorizer could not see.
    fn check_node_create(&self, object: &Value) -> Result<(), ApiError> {
        let resource = self.resource();
        let Some(user) = &self.request.user else {
            return Ok(());
        };
        match node::admission::refuse_create(user, resource.group, resource.plural, object) {
            Some(why) => {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                Err(ApiError::forbidden_on(
                    resource.group,
                    resource.plural,
                    name,
                    &why,
                ))
            }
            None => Ok(()),
        }
    }

    async fn create(&self) -> Result<Reply, ApiError> {
        let mut object = self.json_body()?;
        self.record_requester(&mut object);
        self.check_escalation(&object, None)?;
        self.check_node_create(&object)?;
        let fields = FieldValidation::from_query(&self.query)?;
        let manager = self.manager(Operation::Update, Part::Main);
        let (created, warnings) = self
            .api
            .create(
                self.resource(),
                self.target.namespace.as_deref(),
                object,
                fields,
                Some(&manager),
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
        let env = &self.api.env;
        let fields = FieldValidation::from_query(&self.query)?;
        let manager = self.manager(Operation::Update, part);
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
                let written = Written {
                    part,
                    current: &current,
                    manager: Some(&manager),
                };
                let (updated, dropped) =
                    apply_part(env, resource, name, written, sent.clone(), fields)?;
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
        field_manager::check_patch_options(&self.query, false)?;
        let env = &self.api.env;
        let fields = FieldValidation::from_query(&self.query)?;
        let manager = self.manager(Operation::Update, part);
        let mut warnings = Vec::new();
        let patch: Value = serde_json::from_slice(&self.request.body).map_err(|error| {
            ApiError::bad_request(format!("the patch is not valid JSON: {error}"))
        })?;
        let updated = self
            .write(name, part, |current| {
                let mut patched = current.clone();
                patch::apply(patch_type, &mut patched, &patch).map_err(ApiError::from_patch)?;
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
                let written = Written {
                    part,
                    current: &current,
                    manager: Some(&manager),
                };
                let (updated, dropped) = apply_part(env, resource, name, written, patched, fields)?;
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

    /// Server-side apply (`application/apply-patch+yaml`): the body is the
    /// manager's configuration in YAML or JSON; a missing object is
    /// created from it.
    async fn apply(&self, name: &str) -> Result<Reply, ApiError> {
        let resource = self.resource();
        field_manager::check_patch_options(&self.query, true)?;
        let force = self.query.flag("force")?;
        let manager = self.manager(Operation::Apply, Part::Main);
        let fields = FieldValidation::from_query(&self.query)?;
        let mut config: Value = serde_yaml_ng::from_slice(&self.request.body)
            .map_err(|error| ApiError::bad_request(format!("error decoding YAML: {error}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the apply configuration must be an object",
            ));
        }
        objects::check_type(&mut config, resource)?;
        objects::check_namespace(&mut config, resource, self.target.namespace.as_deref())?;
        let metadata = objects::metadata(&mut config)?;
        match metadata.get("name").and_then(Value::as_str) {
            None | Some("") => {
                metadata.insert("name".into(), json!(name));
            }
            Some(given) if given == name => {}
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )));
            }
        }
        match self.read(name).await {
            Err(error) if error.code == 404 => {
                let mut object = field_manager::apply(None, &config, &manager, resource, force)?;
                self.record_requester(&mut object);
                self.check_escalation(&object, None)?;
                let namespace = self.target.namespace.as_deref();
                match self
                    .api
                    .create(resource, namespace, object, fields, None)
                    .await
                {
                    Ok((created, warnings)) => {
                        return Ok(Reply::Json {
                            code: 201,
                            body: created,
                            warnings,
                        });
                    }
                    // Created meanwhile: apply to what is there.
                    Err(error) if error.reason == "AlreadyExists" => {}
                    Err(error) => return Err(error),
                }
            }
            Err(error) => return Err(error),
            Ok(_) => {}
        }
        let env = &self.api.env;
        let mut warnings = Vec::new();
        let updated = self
            .write(name, Part::Main, |current| {
                let applied =
                    field_manager::apply(Some(&current), &config, &manager, resource, force)?;
                let written = Written {
                    part: Part::Main,
                    current: &current,
                    manager: None,
                };
                let (updated, dropped) = apply_part(env, resource, name, written, applied, fields)?;
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

    /// PUT of `/finalize`: sets the finalizers; an object being deleted that
    /// is left with none is removed, as kube-apiserver ends a namespace.
    async fn finalize(&self, name: &str) -> Result<Reply, ApiError> {
        let reply = self.update(name, Part::Finalize).await?;
        let Reply::Json {
            body: finalized, ..
        } = &reply
        else {
            return Ok(reply);
        };
        let finished = !finalized["metadata"]["deletionTimestamp"].is_null()
            && finalized["spec"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        if finished {
            let resource = self.resource();
            let only_this = Preconditions {
                uid: finalized["metadata"]["uid"].as_str().map(str::to_owned),
                resource_version: None,
            };
            match self.api.store.delete(&self.key(name), &only_this).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(ApiError::from_store(error, resource, name)),
            }
        }
        Ok(reply)
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
        let mut manager = self.manager(Operation::Update, Part::Main);
        manager.subresource = Some("scale".to_owned());
        let updated = self
            .write(name, Part::Main, |current| {
                let mut wanted = scale::of(&current);
                match patch_type {
                    Some(patch_type) => patch::apply(patch_type, &mut wanted, &sent)
                        .map_err(ApiError::from_patch)?,
                    None => wanted = sent.clone(),
                }
                if let Some(version) = wanted["metadata"]["resourceVersion"].as_str()
                    && current["metadata"]["resourceVersion"].as_str() != Some(version)
                {
                    return Err(conflict(resource, name));
                }
                let mut updated = scale::apply(current.clone(), &wanted)?;
                field_manager::record(Some(&current), &mut updated, &manager, resource)?;
                Ok(updated)
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
        self.write(name, Part::Main, |pod| {
            resource
                .strategy
                .bind(pod, &node)
                .map_err(|refusal| ApiError::refused(refusal, resource, name))
        })
        .await?;
        json(
            201,
            json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
        )
    }
}

/// A write of `part` over `current`, recorded in managedFields as an update
/// by `manager` (`None`: the write's managedFields are already recorded).
struct Written<'a> {
    part: Part,
    current: &'a Value,
    manager: Option<&'a Manager>,
}

/// The object a write stores, prepared and validated by the kind's
/// strategy, and the warnings about fields dropped from it.
fn apply_part(
    env: &Env,
    resource: &Resource,
    name: &str,
    written: Written,
    sent: Value,
    fields: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let Written {
        part,
        current,
        manager,
    } = written;
    let strategy = resource.strategy;
    let mut updated = match part {
        Part::Main => objects::merge_update(sent, current, resource)?,
        Part::Status => strategy.status_update(&sent, current),
        Part::Finalize => strategy.finalize_update(&sent, current),
        Part::Approval => strategy.approval_update(&sent, current),
    };
    let warnings = fields.apply(resource, &mut updated)?;
    // The finalize strategy changes the finalizers and nothing else; the
    // main one keeps them as they are.
    if part != Part::Finalize {
        strategy.prepare_for_update(&mut updated, current);
    }
    let metadata = match part {
        Part::Main => objects::validate_updated_metadata(&updated, current)?,
        Part::Status | Part::Finalize | Part::Approval => Vec::new(),
    };
    Refusal::combine(metadata, strategy.validate_update(env, &updated, current))
        .map_err(|refusal| ApiError::refused(refusal, resource, name))?;
    if let Some(manager) = manager {
        field_manager::record(Some(current), &mut updated, manager, resource)?;
    }
    Ok((updated, warnings))
}

fn conflict(resource: &Resource, name: &str) -> ApiError {
    ApiError::conflict(
        resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

impl Api {
    /// Creates `object` as a new `resource` in `namespace`: identity, then
    /// the kind's defaults, validation and allocations. Returns it with the
    /// warnings about fields dropped from it. Its fields are recorded as
    /// `manager`'s; without one (an apply) its managedFields are kept.
    pub(super) async fn create(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        mut object: Value,
        fields: FieldValidation,
        manager: Option<&Manager>,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let applied = objects::metadata(&mut object)?.remove("managedFields");
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
        let strategy = resource.strategy;
        let refused = |refusal| ApiError::refused(refusal, resource, &name);
        strategy
            .admit(&self.env, &mut object)
            .await
            .map_err(refused)?;
        strategy.prepare_for_create(&mut object);
        let subject = admission::Subject {
            group: resource.group,
            plural: resource.plural,
            namespace: namespace.unwrap_or_default(),
            name: &name,
        };
        if namespace.is_some() {
            admission::mutate(&self.store, &subject, &mut object)
                .await
                .map_err(refused)?;
        }
        match (manager, applied) {
            (Some(manager), _) => field_manager::record(None, &mut object, manager, resource)?,
            (None, Some(applied)) => object["metadata"]["managedFields"] = applied,
            (None, None) => {}
        }
        let metadata = objects::validate_new_metadata(&object, resource)?;
        Refusal::combine(metadata, strategy.validate(&self.env, &object)).map_err(refused)?;
        if namespace.is_some() {
            admission::validate(&self.store, &subject, None, &object)
                .await
                .map_err(refused)?;
        }
        let claim = strategy
            .allocate(&self.env, None, &mut object)
            .await
            .map_err(refused)?;
        let key = object_key(resource.storage, namespace, &name);
        let created = self.store.create(&key, &object).await;
        if created.is_err() && claim == Claim::Taken {
            strategy
                .release_unwritten(&self.env, None, &object, None)
                .await;
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
