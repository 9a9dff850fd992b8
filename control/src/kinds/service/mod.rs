//! Services: kube-apiserver's defaults and validation, what an update keeps
//! of the stored Service, and the ClusterIP, NodePorts, health check
//! NodePort and LoadBalancer IP they hold in the shared pools.

mod carry_over;
mod fields;
mod ip_families;
pub(super) mod pools;
pub(super) mod validation;

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{BoxFuture, Claim, Strategy, Subresource};
use pools::Holdings;

#[derive(Debug)]
pub struct ServiceStrategy;

fn decode(object: &Value) -> Result<Service, Refusal> {
    serde_json::from_value(object.clone())
        .map_err(|error| Refusal::BadRequest(format!("the Service cannot be decoded: {error}")))
}

/// `service` with its IP family fields completed for this cluster, as
/// kube-apiserver does before validating: validation sees what is stored.
fn completed(env: &Env, old: Option<&Value>, service: &Value) -> Result<Value, Refusal> {
    let mut completed = service.clone();
    complete(env, old, &mut completed)?;
    Ok(completed)
}

fn complete(env: &Env, old: Option<&Value>, service: &mut Value) -> Result<(), Refusal> {
    ip_families::init_ip_family_fields(&env.service_options.ip_families, old, service)
        .map_err(Refusal::Invalid)
}

impl Strategy for ServiceStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn initial_status(&self) -> Option<Value> {
        Some(json!({ "loadBalancer": {} }))
    }

    fn prepare_for_create(&self, service: &mut Value) {
        validation::default_service(service);
        validation::sync_cluster_ips(service);
    }

    fn prepare_for_update(&self, service: &mut Value, old: &Value) {
        validation::default_service(service);
        carry_over::carry_over(old, service);
    }

    fn validate(&self, env: &Env, service: &Value) -> Result<(), Refusal> {
        let completed = completed(env, None, service)?;
        Refusal::unless_valid(validation::validate_service(
            &decode(&completed)?,
            &env.service_options,
        ))
    }

    fn validate_update(&self, env: &Env, service: &Value, old: &Value) -> Result<(), Refusal> {
        let completed = completed(env, Some(old), service)?;
        Refusal::unless_valid(validation::validate_service_update(
            &decode(&completed)?,
            &decode(old)?,
            &env.service_options,
        ))
    }

    fn allocate<'a>(
        &'a self,
        env: &'a Env,
        old: Option<&'a Value>,
        service: &'a mut Value,
    ) -> BoxFuture<'a, Result<Claim, Refusal>> {
        Box::pin(async move {
            complete(env, old, service)?;
            let taken = env.service_pools.claim(old, service).await?;
            Ok(if taken.is_empty() {
                Claim::Nothing
            } else {
                Claim::Taken
            })
        })
    }

    fn release_unwritten<'a>(
        &'a self,
        env: &'a Env,
        old: Option<&'a Value>,
        service: &'a Value,
        latest: Option<&'a Value>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let held = |service: Option<&Value>| service.map(Holdings::of).unwrap_or_default();
            // A concurrent write of this Service may hold some of it now:
            // that stays.
            let taken = Holdings::of(service)
                .without(&held(old))
                .without(&held(latest));
            env.service_pools.give_back(service, &taken).await;
        })
    }

    fn release_dropped<'a>(
        &'a self,
        env: &'a Env,
        old: &'a Value,
        new: Option<&'a Value>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(env.service_pools.release_dropped(old, new))
    }
}
