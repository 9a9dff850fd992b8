//! CronJobs: kube-apiserver's defaults (concurrency Allow, not suspended,
//! keep 3 successful and 1 failed job) and validation: the schedule and
//! time zone must parse, the job template is a valid Job spec whose
//! selector will be generated, and the name leaves room for the `-<minutes>`
//! suffix of the jobs it makes.

use serde_json::{Value, json};

use super::job::{nonnegative, validate_spec};
use super::schedule::{parse_cron, time_zone};
use crate::controllers::meta;
use crate::kinds::refusal::Refusal;
use crate::validation::{FieldError, Rendered};

/// A job's name is `<cronjob>-<minutes since the epoch>` (11 characters
/// more) and must stay a DNS-1035 label of at most 63.
const MAX_NAME_LENGTH: usize = 52;

pub fn default_cron_job(cron_job: &mut Value) {
    let spec = &mut cron_job["spec"];
    for (field, value) in [
        ("concurrencyPolicy", json!("Allow")),
        ("suspend", json!(false)),
        ("successfulJobsHistoryLimit", json!(3)),
        ("failedJobsHistoryLimit", json!(1)),
    ] {
        if spec[field].is_null() {
            spec[field] = value;
        }
    }
}

pub fn validate(cron_job: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = validate_cron_spec(&cron_job["spec"], None);
    let name = meta::name(cron_job);
    if name.len() > MAX_NAME_LENGTH {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be no more than {MAX_NAME_LENGTH} characters"),
        ));
    }
    Ok(errs)
}

/// As [`validate`], but the name's length is not checked again (older
/// cronjobs with longer names stay editable), nor an unchanged time zone.
pub fn validate_update(cron_job: &Value, old: &Value) -> Result<Vec<FieldError>, Refusal> {
    Ok(validate_cron_spec(&cron_job["spec"], Some(&old["spec"])))
}

fn validate_cron_spec(spec: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match spec["schedule"].as_str().unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.schedule", "")),
        schedule => {
            if let Err(message) = parse_cron(schedule) {
                errs.push(FieldError::invalid("spec.schedule", schedule, message));
            }
            if schedule.contains("TZ") {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            }
        }
    }
    errs.extend(nonnegative(
        &spec["startingDeadlineSeconds"],
        "spec.startingDeadlineSeconds",
    ));
    if old.is_none_or(|old| old["timeZone"] != spec["timeZone"]) {
        errs.extend(validate_time_zone(&spec["timeZone"]));
    }
    match spec["concurrencyPolicy"].as_str().unwrap_or_default() {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        other => errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let job_spec = &spec["jobTemplate"]["spec"];
    errs.extend(validate_spec(job_spec, "spec.jobTemplate.spec"));
    if !job_spec["selector"].is_null() {
        errs.push(FieldError::invalid(
            "spec.jobTemplate.spec.selector",
            Rendered(job_spec["selector"].to_string()),
            "`selector` will be auto-generated",
        ));
    }
    if job_spec["manualSelector"].as_bool() == Some(true) {
        errs.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            Rendered("true".to_owned()),
            &["nil", "false"],
        ));
    }
    for field in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        errs.extend(nonnegative(&spec[field], &format!("spec.{field}")));
    }
    errs
}

fn validate_time_zone(zone: &Value) -> Option<FieldError> {
    let name = zone.as_str()?;
    let path = "spec.timeZone";
    if name.is_empty() {
        return Some(FieldError::invalid(
            path,
            name,
            "timeZone must be nil or non-empty string",
        ));
    }
    if name.eq_ignore_ascii_case("Local") {
        return Some(FieldError::invalid(
            path,
            name,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    time_zone(name)
        .err()
        .map(|message| FieldError::invalid(path, name, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron_job(name: &str, spec: Value) -> Value {
        let mut cron_job = json!({
            "metadata": { "name": name, "namespace": "default", "uid": "u" },
            "spec": spec,
        });
        default_cron_job(&mut cron_job);
        cron_job
    }

    fn spec(schedule: &str) -> Value {
        json!({
            "schedule": schedule,
            "jobTemplate": { "spec": { "template": { "spec": {
                "restartPolicy": "OnFailure",
                "containers": [{ "name": "c", "image": "i" }],
            } } } },
        })
    }

    fn messages(cron_job: &Value) -> Vec<String> {
        validate(cron_job)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_are_upstreams() {
        let cron_job = cron_job("hello", spec("*/1 * * * *"));
        assert_eq!(cron_job["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cron_job["spec"]["suspend"], false);
        assert_eq!(cron_job["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cron_job["spec"]["failedJobsHistoryLimit"], 1);
        assert!(messages(&cron_job).is_empty(), "{:?}", messages(&cron_job));
    }

    #[test]
    fn bad_schedules_zones_and_names_are_refused() {
        let bad = messages(&cron_job("hello", spec("every minute")));
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].starts_with(r#"spec.schedule: Invalid value: "every minute": "#),
            "{bad:?}"
        );
        let mut zoned = spec("@hourly");
        zoned["timeZone"] = json!("Mars/Olympus");
        assert_eq!(
            messages(&cron_job("hello", zoned)),
            [r#"spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus"#]
        );
        let long = "a".repeat(53);
        assert_eq!(
            messages(&cron_job(&long, spec("@hourly"))),
            [format!(
                r#"metadata.name: Invalid value: "{long}": must be no more than 52 characters"#
            )]
        );
    }
}
