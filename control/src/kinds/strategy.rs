//! The one trait every kind's behaviour hides behind, after kube-apiserver's
//! registry strategies (`PrepareForCreate`, `Validate`, `PrepareForUpdate`,
//! `ValidateUpdate`, the status strategy, graceful deletion), plus skiff's
//! hooks for what a kind holds in the shared pools. The verbs call these and
//! nothing kind-specific; every method has the default a kind without rules
//! of its own wants.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use crate::authz::User;

/// A future a strategy returns from its asynchronous hooks.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A subresource a kind serves besides the object itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: a write there changes only `.status`.
    Status,
    /// `/scale`: an `autoscaling/v1` Scale over `spec.replicas`.
    Scale,
    /// `/log`: a container's log, from the node's kubelet.
    Log,
    /// `/binding`: assigns a pod to a node.
    Binding,
    /// `/finalize`: a write there changes only `spec.finalizers`; an object
    /// being deleted that is left with none is removed (how a namespace's
    /// deletion ends).
    Finalize,
    /// `/token`: issues a bound service-account token (TokenRequest).
    Token,
    /// `/approval`: a write there changes only `status.conditions` (how a
    /// CertificateSigningRequest is approved or denied).
    Approval,
}

/// What an allocation took that the stored object did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Nothing,
    /// Given back with [`Strategy::release_unwritten`] if the write fails.
    Taken,
}

pub trait Strategy: Sync + Debug {
    /// The subresources the kind serves.
    fn subresources(&self) -> &'static [Subresource] {
        &[]
    }

    fn serves(&self, subresource: Subresource) -> bool {
        self.subresources().contains(&subresource)
    }

    /// Status strategy on create: what `.status` starts as (a controller
    /// fills it later); `None` stores what the client sent.
    fn initial_status(&self) -> Option<Value> {
        self.serves(Subresource::Status).then(|| json!({}))
    }

    /// Status strategy on an update of the main resource: whether `.status`
    /// stays as stored (then only `/status` changes it).
    fn keeps_status_on_update(&self) -> bool {
        self.serves(Subresource::Status)
    }

    /// Status strategy on a `/status` update: the object to store, `current`
    /// with what `sent` may change there (its status).
    fn status_update(&self, sent: &Value, current: &Value) -> Value {
        let mut updated = current.clone();
        updated["status"] = sent.get("status").cloned().unwrap_or_else(|| json!({}));
        updated
    }

    /// The `/approval` subresource: the object to store, `current` with
    /// the `status.conditions` that `sent` has.
    fn approval_update(&self, sent: &Value, current: &Value) -> Value {
        let mut updated = current.clone();
        updated["status"]["conditions"] = sent["status"]["conditions"].clone();
        updated
    }

    /// The `/finalize` subresource: the object to store, `current` with the
    /// `spec.finalizers` that `sent` has.
    fn finalize_update(&self, sent: &Value, current: &Value) -> Value {
        let mut updated = current.clone();
        updated["spec"]["finalizers"] = sent["spec"]["finalizers"].clone();
        updated
    }

    /// Mutating admission on create, before the defaults: what depends on
    /// other stored objects (a claim's default StorageClass).
    fn admit<'a>(
        &'a self,
        _env: &'a Env,
        _object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async { Ok(()) })
    }

    /// On create, before the defaults: records `user`, who asks, where the
    /// kind keeps its requester.
    fn record_requester(&self, _object: &mut Value, _user: &User) {}

    /// Defaults filled in on create, before validation.
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// Defaults filled in on an update, before validation; what the server
    /// gave `old` carries over.
    fn prepare_for_update(&self, _object: &mut Value, _old: &Value) {}

    /// Validation of a new (prepared) object.
    fn validate(&self, _env: &Env, _object: &Value) -> Result<(), Refusal> {
        Ok(())
    }

    /// Validation of an update of `old` (both prepared).
    fn validate_update(&self, _env: &Env, _object: &Value, _old: &Value) -> Result<(), Refusal> {
        Ok(())
    }

    /// Claims from the shared pools what the validated `object` needs,
    /// filling in the values it leaves to the server, before it is written.
    /// `old` is the stored object on an update. On error it has given back
    /// what it took.
    fn allocate<'a>(
        &'a self,
        _env: &'a Env,
        _old: Option<&'a Value>,
        _object: &'a mut Value,
    ) -> BoxFuture<'a, Result<Claim, Refusal>> {
        Box::pin(async { Ok(Claim::Nothing) })
    }

    /// The write of `object` (allocated over `old`) failed: gives back what
    /// the allocation took, except what `latest` (the object stored now, if
    /// any) holds.
    fn release_unwritten<'a>(
        &'a self,
        _env: &'a Env,
        _old: Option<&'a Value>,
        _object: &'a Value,
        _latest: Option<&'a Value>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// `old` was replaced by `new`, or deleted (`None`): gives back what it
    /// held and its successor does not.
    fn release_dropped<'a>(
        &'a self,
        _env: &'a Env,
        _old: &'a Value,
        _new: Option<&'a Value>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Refuses the DELETE of the object `name` outright.
    fn check_delete(&self, _name: &str) -> Result<(), Refusal> {
        Ok(())
    }

    /// Graceful deletion: `Some(grace)` when a DELETE of `object` only marks
    /// it (with [`Strategy::mark_deleting`]) and whoever finishes it removes
    /// it later; `None` removes it now. `requested` is the request's grace
    /// period.
    fn graceful_deletion(&self, _object: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// `object` marked as being deleted with `grace` seconds.
    fn mark_deleting(&self, object: Value, _grace: i64) -> Value {
        object
    }

    /// The `/binding` subresource: `object` assigned to `node`.
    fn bind(&self, _object: Value, _node: &str) -> Result<Value, Refusal> {
        Err(Refusal::BadRequest(
            "this kind has no binding subresource".to_owned(),
        ))
    }
}
