//! What a controller is and what it works with: the names the controllers,
//! the scheduler and the loop that runs them share.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::cache::Cache;
use super::client::Client;
use super::config::ControllerConfig;
use super::error::ControllerError;
use super::kind::Kind;

/// What every controller works with.
#[derive(Clone)]
pub struct Context {
    pub cache: Arc<Cache>,
    pub client: Client,
    pub config: Arc<ControllerConfig>,
    /// Which instance acts (the leader's identity), for events.
    pub identity: String,
}

/// One reconciler.
pub trait Controller: Send + 'static {
    const NAME: &'static str;

    /// One pass over the cluster; returns the kinds it wrote.
    fn reconcile(
        &mut self,
        context: &Context,
    ) -> impl Future<Output = Result<Vec<Kind>, ControllerError>> + Send;

    /// How soon a time-based decision of the last pass falls due (a backoff
    /// ends, a schedule fires), so that the next pass runs then rather than
    /// at the resync; `None` when nothing is due.
    fn wake_in(&self) -> Option<Duration> {
        None
    }
}
