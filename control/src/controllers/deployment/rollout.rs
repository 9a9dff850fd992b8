//! How a rollout moves pods between the Deployment's ReplicaSets: the
//! replica counts RollingUpdate (within maxSurge and maxUnavailable) and
//! Recreate want next.

use serde_json::{Value, json};

use super::Owned;

/// An intOrString of maxSurge/maxUnavailable against `total`: a number, or
/// a percentage rounded up (surge) or down (unavailable). Both default to
/// 25%.
pub(super) fn resolve(value: &Value, total: usize, round_up: bool) -> usize {
    match value {
        Value::Number(number) => number.as_u64().unwrap_or(0) as usize,
        Value::String(text) => {
            let percent: usize = text.trim_end_matches('%').parse().unwrap_or(25);
            let scaled = total * percent;
            if round_up {
                scaled.div_ceil(100)
            } else {
                scaled / 100
            }
        }
        _ => resolve(&json!("25%"), total, round_up),
    }
}

/// Recreate: every old pod gone before the new ReplicaSet scales up.
pub(super) fn recreate(owned: &mut [Owned], new_index: usize, desired: usize) {
    let mut old_pods = 0;
    for (index, rs) in owned.iter_mut().enumerate() {
        if index != new_index {
            rs.replicas = 0;
            old_pods += rs.pods;
        }
    }
    if old_pods == 0 {
        owned[new_index].replicas = desired;
    }
}

/// RollingUpdate as Kubernetes' `rolloutRolling`: scale the new
/// ReplicaSet up as far as maxSurge allows, then the old ones down as far
/// as maxUnavailable allows (pods that are not available first).
pub(super) fn rolling_update(
    owned: &mut [Owned],
    new_index: usize,
    desired: usize,
    strategy: &Value,
) {
    let surge = resolve(&strategy["maxSurge"], desired, true);
    let mut unavailable = resolve(&strategy["maxUnavailable"], desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    // Up: the new ReplicaSet, within desired + surge pods in all.
    let total: usize = owned.iter().map(|rs| rs.replicas).sum();
    let new = &mut owned[new_index];
    if new.replicas > desired {
        new.replicas = desired;
    } else if new.replicas < desired {
        let room = (desired + surge).saturating_sub(total);
        new.replicas = (new.replicas + room).min(desired);
    }
    // Down: the old ones, keeping desired - unavailable available.
    let min_available = desired.saturating_sub(unavailable);
    let total: usize = owned.iter().map(|rs| rs.replicas).sum();
    let new_unavailable = owned[new_index]
        .replicas
        .saturating_sub(owned[new_index].available);
    let mut budget = total as i64 - min_available as i64 - new_unavailable as i64;
    if budget <= 0 {
        return;
    }
    for (index, rs) in owned.iter_mut().enumerate() {
        if index == new_index || budget == 0 {
            continue;
        }
        let unhealthy = rs.replicas.saturating_sub(rs.available) as i64;
        let cut = unhealthy.min(budget);
        rs.replicas -= cut as usize;
        budget -= cut;
    }
    let available: usize = owned.iter().map(|rs| rs.available.min(rs.replicas)).sum();
    let mut scale_down = available.saturating_sub(min_available);
    for (index, rs) in owned.iter_mut().enumerate() {
        if index == new_index || scale_down == 0 {
            continue;
        }
        let cut = rs.replicas.min(scale_down);
        rs.replicas -= cut;
        scale_down -= cut;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: usize, available: usize) -> Owned {
        Owned {
            replica_set: json!({}),
            replicas,
            active: replicas,
            ready: available,
            available,
            pods: replicas,
        }
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        assert_eq!(resolve(&Value::Null, 4, true), 1);
        assert_eq!(resolve(&Value::Null, 4, false), 1);
        assert_eq!(resolve(&json!("25%"), 3, true), 1);
        assert_eq!(resolve(&json!("25%"), 3, false), 0);
        assert_eq!(resolve(&json!(2), 10, false), 2);
    }

    #[test]
    fn rolling_update_stays_within_surge_and_unavailable() {
        // 4 wanted, 25%: one extra pod, one unavailable.
        let mut owned = [rs(4, 4), rs(0, 0)];
        rolling_update(&mut owned, 1, 4, &Value::Null);
        assert_eq!((owned[0].replicas, owned[1].replicas), (3, 1));
        // The old pod has gone: one more new one, no old one while the
        // new ones are not ready.
        owned[0].available = 3;
        rolling_update(&mut owned, 1, 4, &Value::Null);
        assert_eq!((owned[0].replicas, owned[1].replicas), (3, 2));
        owned[1].available = 2;
        rolling_update(&mut owned, 1, 4, &Value::Null);
        assert_eq!((owned[0].replicas, owned[1].replicas), (1, 2));
    }

    #[test]
    fn recreate_waits_for_old_pods() {
        let mut owned = [rs(3, 3), rs(0, 0)];
        recreate(&mut owned, 1, 3);
        assert_eq!((owned[0].replicas, owned[1].replicas), (0, 0));
        owned[0].pods = 0;
        recreate(&mut owned, 1, 3);
        assert_eq!(owned[1].replicas, 3);
    }
}
