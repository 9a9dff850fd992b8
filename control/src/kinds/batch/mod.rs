//! Jobs and CronJobs (`batch/v1`): their strategies, and the schedules the
//! cronjob controller shares with validation.

mod cronjob;
mod job;
mod schedule;

use serde_json::Value;

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};

pub use job::{CONTROLLER_UID_LABEL, JOB_NAME_LABEL};
pub use schedule::Schedule;

#[derive(Debug)]
pub struct JobStrategy;

impl Strategy for JobStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn prepare_for_create(&self, job: &mut Value) {
        job::default_spec(&mut job["spec"]);
        job::generate_selector(job);
    }

    fn prepare_for_update(&self, job: &mut Value, _old: &Value) {
        job::default_spec(&mut job["spec"]);
    }

    fn validate(&self, _env: &Env, job: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(job::validate(job)?)
    }

    fn validate_update(&self, _env: &Env, job: &Value, old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(job::validate_update(job, old)?)
    }
}

#[derive(Debug)]
pub struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn prepare_for_create(&self, cron_job: &mut Value) {
        cronjob::default_cron_job(cron_job);
    }

    fn prepare_for_update(&self, cron_job: &mut Value, _old: &Value) {
        cronjob::default_cron_job(cron_job);
    }

    fn validate(&self, _env: &Env, cron_job: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(cronjob::validate(cron_job)?)
    }

    fn validate_update(&self, _env: &Env, cron_job: &Value, old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(cronjob::validate_update(cron_job, old)?)
    }
}
