//! DELETE of one object and of a collection (`deletecollection`), as
//! kube-apiserver's `DeleteResource`/`DeleteCollection` handlers and the
//! registry's `Delete`: `DeleteOptions` from the body or the query,
//! preconditions, graceful deletion and finalizers, dry runs, and the answer
//! (the object, or a `Status` for kinds that do not return it).

use serde_json::{Value, json};

use super::Reply;
use super::handlers::{Handler, Part};
use super::objects;
use super::query::{Query, parse_bool};
use super::status::{self, ApiError};
use crate::store::{ListRequest, Preconditions};
use crate::validation::{FieldError, Rendered, go_string_slice, invalid_status};

/// What kube-apiserver accepts as `propagationPolicy`, besides none.
const PROPAGATION_POLICIES: &[&str] = &["Background", "Orphan"];

/// A request's `DeleteOptions`.
#[derive(Debug, Default)]
struct DeleteOptions {
    preconditions: Preconditions,
    grace_period: Option<i64>,
    /// The dependents lose their ownerReference instead of being collected.
    orphan: bool,
    /// `orphanDependents: false`, the deprecated way to ask for cascading:
    /// an object that is not removed at once is then answered with 202.
    cascade_requested: bool,
    dry_run: bool,
}

impl DeleteOptions {
    /// From the body when there is one, else from the query, as
    /// kube-apiserver reads them; invalid options are a 422.
    fn parse(body: &[u8], query: &Query) -> Result<Self, ApiError> {
        let sent = if body.is_empty() {
            from_query(query)?
        } else {
            objects::parse_body(body)?
        };
        let text = |path: &[&str]| {
            let mut value = &sent;
            for key in path {
                value = &value[*key];
            }
            value.as_str().map(str::to_owned)
        };
        let policy = text(&["propagationPolicy"]);
        let orphan_dependents = sent["orphanDependents"].as_bool();
        let dry_run: Vec<String> = match &sent["dryRun"] {
            Value::Array(values) => values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let mut errs = Vec::new();
        if let Some(policy) = &policy {
            if orphan_dependents.is_some() {
                errs.push(FieldError::invalid(
                    "propagationPolicy",
                    policy.as_str(),
                    "orphanDependents and deletionPropagation cannot be both set",
                ));
            }
            if !PROPAGATION_POLICIES.contains(&policy.as_str()) {
                let mut supported = PROPAGATION_POLICIES.to_vec();
                supported.push("nil");
                errs.push(FieldError::not_supported(
                    "propagationPolicy",
                    policy.as_str(),
                    &supported,
                ));
            }
        }
        if dry_run.iter().any(|value| value != "All") {
            errs.push(FieldError::not_supported(
                "dryRun",
                Rendered(go_string_slice(&dry_run)),
                &["All"],
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(invalid_status(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &errs,
            )));
        }
        Ok(Self {
            preconditions: Preconditions {
                uid: text(&["preconditions", "uid"]),
                resource_version: text(&["preconditions", "resourceVersion"]),
            },
            // A negative grace period means one second, as upstream.
            grace_period: sent["gracePeriodSeconds"]
                .as_i64()
                .map(|grace| if grace < 0 { 1 } else { grace }),
            orphan: policy.as_deref() == Some("Orphan") || orphan_dependents == Some(true),
            cascade_requested: orphan_dependents == Some(false),
            dry_run: !dry_run.is_empty(),
        })
    }
}

/// The `DeleteOptions` a query carries, as the JSON a body would.
fn from_query(query: &Query) -> Result<Value, ApiError> {
    let mut options = json!({});
    if let Some(grace) = query.get("gracePeriodSeconds") {
        let grace: i64 = grace.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid gracePeriodSeconds value {grace:?}"))
        })?;
        options["gracePeriodSeconds"] = json!(grace);
    }
    if let Some(policy) = query.get("propagationPolicy") {
        options["propagationPolicy"] = json!(policy);
    }
    if let Some(orphan) = query.get("orphanDependents") {
        let orphan = parse_bool(orphan).ok_or_else(|| {
            ApiError::bad_request(format!("invalid orphanDependents value {orphan:?}"))
        })?;
        options["orphanDependents"] = json!(orphan);
    }
    if let Some(dry_run) = query.get("dryRun") {
        options["dryRun"] = json!([dry_run]);
    }
    Ok(options)
}

/// What a DELETE of one object did.
enum Outcome {
    /// Removed now: the object as it was.
    Removed(Value),
    /// Marked for deletion (graceful, or waiting for finalizers).
    Marked(Value),
}

impl Handler<'_> {
    /// DELETE of the object `name`.
    pub(super) async fn delete(&self, name: &str) -> Result<Reply, ApiError> {
        let options = DeleteOptions::parse(&self.request.body, &self.query)?;
        let resource = self.target.resource;
        let (code, body) = match self.delete_one(name, &options).await? {
            Outcome::Removed(object) if resource.returns_deleted => (200, object),
            Outcome::Removed(object) => (
                200,
                status::deleted(resource, name, &object["metadata"]["uid"]),
            ),
            Outcome::Marked(object) if options.cascade_requested => (202, object),
            Outcome::Marked(object) => (200, object),
        };
        Ok(Reply::Json {
            code,
            body,
            warnings: Vec::new(),
        })
    }

    /// DELETE on a collection: every object its label and field selectors
    /// match, each through the same path as a DELETE of it. Answers with the
    /// list of them as they were.
    pub(super) async fn delete_collection(&self) -> Result<Reply, ApiError> {
        let resource = self.target.resource;
        // Upstream serves it only on a namespace's collection, not across
        // all namespaces.
        if !resource.deletes_collections || (resource.namespaced && self.target.namespace.is_none())
        {
            return Err(ApiError::method_not_allowed("DELETE"));
        }
        let options = DeleteOptions::parse(&self.request.body, &self.query)?;
        let page = self.select(ListRequest::default()).await?;
        for object in &page.items {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            match self.delete_one(name, &options).await {
                Err(error) if error.code == 404 => {}
                outcome => {
                    outcome?;
                }
            }
        }
        Ok(Reply::Json {
            code: 200,
            body: objects::list(
                resource,
                json!({ "resourceVersion": page.revision.to_string() }),
                page.items,
            ),
            warnings: Vec::new(),
        })
    }

    /// Deletes `name`: removed at once, unless its kind deletes gracefully
    /// or it has finalizers: then it is only marked, and whoever finishes it
    /// (a node, the namespace controller, the owner of the last finalizer)
    /// removes it later. A dry run changes nothing and answers the same.
    async fn delete_one(&self, name: &str, options: &DeleteOptions) -> Result<Outcome, ApiError> {
        let resource = self.target.resource;
        let strategy = resource.strategy;
        let preconditions = &options.preconditions;
        let store_error = |error| ApiError::from_store(error, resource, name);
        strategy
            .check_delete(name)
            .map_err(|refusal| ApiError::refused(refusal, resource, name))?;
        let current = self.read(name).await?;
        preconditions.check(&current).map_err(store_error)?;
        let graceful = strategy.graceful_deletion(&current, options.grace_period);
        let mark = |object: Value| match graceful {
            Some(grace) => strategy.mark_deleting(object, grace),
            None => objects::mark_finalizing(object),
        };
        let marks = graceful.is_some() || objects::has_finalizers(&current);
        if options.dry_run {
            return Ok(if marks {
                Outcome::Marked(mark(current))
            } else {
                Outcome::Removed(current)
            });
        }
        if options.orphan {
            self.api.orphan_dependents(&current).await?;
        }
        if marks {
            let marked = self
                .write(name, Part::Main, |object| {
                    preconditions.check(&object).map_err(store_error)?;
                    Ok(mark(object))
                })
                .await?;
            return Ok(Outcome::Marked(marked));
        }
        let deleted = self
            .api
            .store
            .delete(&self.key(name), preconditions)
            .await
            .map_err(store_error)?;
        strategy
            .release_dropped(&self.api.env, &deleted, None)
            .await;
        Ok(Outcome::Removed(deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, query: &str) -> Result<DeleteOptions, ApiError> {
        DeleteOptions::parse(body.as_bytes(), &Query::parse(Some(query)).unwrap())
    }

    #[test]
    fn options_come_from_the_body_or_else_the_query() {
        let body = r#"{"kind":"DeleteOptions","gracePeriodSeconds":-5,"propagationPolicy":"Orphan","preconditions":{"uid":"u1"},"dryRun":["All"]}"#;
        let options = parse(body, "gracePeriodSeconds=9").unwrap();
        assert_eq!(options.grace_period, Some(1));
        assert!(options.orphan && options.dry_run && !options.cascade_requested);
        assert_eq!(options.preconditions.uid.as_deref(), Some("u1"));

        let options = parse("", "gracePeriodSeconds=9&orphanDependents=false&dryRun=All").unwrap();
        assert_eq!(options.grace_period, Some(9));
        assert!(!options.orphan && options.cascade_requested && options.dry_run);
        assert!(!parse("", "propagationPolicy=Background").unwrap().orphan);
    }

    #[test]
    fn invalid_options_are_a_422() {
        let error = parse("", "propagationPolicy=Sometimes").unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(
            error.message,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sometimes\": supported values: \"Background\", \"Orphan\", \"nil\""
        );
        let error = parse(r#"{"dryRun":["Some"]}"#, "").unwrap_err();
        assert!(
            error.message.ends_with(
                "dryRun: Unsupported value: []string{\"Some\"}: supported values: \"All\""
            ),
            "{}",
            error.message
        );
        let both = parse(
            r#"{"orphanDependents":true,"propagationPolicy":"Orphan"}"#,
            "",
        );
        assert_eq!(both.unwrap_err().code, 422);
        // Foreground deletion is not carried out here: refused, not ignored.
        assert_eq!(
            parse("", "propagationPolicy=Foreground").unwrap_err().code,
            422
        );
    }
}
