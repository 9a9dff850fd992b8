//! The per-pod loop that keeps API-data volumes current (a ConfigMap or
//! Secret update reaches the files within one period, well inside the
//! minute Kubernetes promises, and a ServiceAccount token is replaced
//! within one period of falling due) and reports emptyDirs over their
//! sizeLimit as Events.
use std::{sync::Arc, time::Duration};

use tracing::warn;

use super::{pod::PodVolumes, token::TokenIssuer};
use crate::kubelet::{events::Recorder, objects::Objects};

pub const REFRESH_PERIOD: Duration = Duration::from_secs(10);

/// Refreshes every `period` until the task is aborted with its pod.
pub async fn refresh_until_stopped(
    volumes: Arc<PodVolumes>,
    objects: impl Objects,
    issuer: impl TokenIssuer,
    recorder: Recorder,
    period: Duration,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        for notice in volumes.refresh(&objects, &issuer).await {
            if let Err(error) = recorder.warning(notice.reason, &notice.message).await {
                warn!(%error, reason = notice.reason, "recording a volume event failed");
            }
        }
    }
}
