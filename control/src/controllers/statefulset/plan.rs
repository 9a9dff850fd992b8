//! What a StatefulSet pass does next, decided from the state of each
//! ordinal as pkg/controller/statefulset's `updateStatefulSet` decides it:
//! wanted ordinals are created lowest first, the others deleted highest
//! first, then the rolling update replaces pods from the highest ordinal
//! down to the partition. OrderedReady does one step at a time and only
//! once every lower ordinal is Running and Ready; Parallel does all the
//! creations and deletions at once.

/// One ordinal's pod as the pass sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Missing,
    /// Being deleted: its name is taken until it is gone.
    Terminating,
    /// Succeeded or Failed: replaced.
    Finished,
    /// Running but not Ready, or not yet running.
    Starting,
    /// Running and Ready.
    Healthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub ordinal: i64,
    pub state: PodState,
    /// Made from the update revision.
    pub updated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create(i64),
    /// A finished pod, a condemned one, or one the rolling update replaces.
    Delete(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// OrderedReady (else Parallel).
    pub ordered: bool,
    /// RollingUpdate's partition, as an index into the wanted ordinals;
    /// `None` for OnDelete.
    pub partition: Option<usize>,
}

/// The actions of one pass. `wanted` are the ordinals the set should have,
/// ascending; `condemned` the pods beyond them.
pub fn plan(wanted: &[Slot], condemned: &[Slot], policy: Policy) -> Vec<Action> {
    let mut actions = Vec::new();
    for slot in wanted {
        match slot.state {
            PodState::Healthy => continue,
            PodState::Missing => actions.push(Action::Create(slot.ordinal)),
            PodState::Finished => actions.push(Action::Delete(slot.ordinal)),
            PodState::Terminating | PodState::Starting => {}
        }
        if policy.ordered {
            return actions;
        }
    }
    let mut condemned: Vec<&Slot> = condemned.iter().collect();
    condemned.sort_by_key(|slot| std::cmp::Reverse(slot.ordinal));
    for slot in condemned {
        if slot.state != PodState::Terminating {
            actions.push(Action::Delete(slot.ordinal));
        }
        if policy.ordered {
            return actions;
        }
    }
    let Some(partition) = policy.partition else {
        return actions;
    };
    for slot in wanted.iter().skip(partition).rev() {
        let replaceable = !matches!(slot.state, PodState::Missing | PodState::Terminating);
        if !slot.updated && replaceable {
            actions.push(Action::Delete(slot.ordinal));
            return actions;
        }
        if slot.state != PodState::Healthy {
            return actions;
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERED: Policy = Policy {
        ordered: true,
        partition: Some(0),
    };
    const PARALLEL: Policy = Policy {
        ordered: false,
        partition: Some(0),
    };

    fn slots(states: &[(PodState, bool)], first: i64) -> Vec<Slot> {
        states
            .iter()
            .zip(first..)
            .map(|(&(state, updated), ordinal)| Slot {
                ordinal,
                state,
                updated,
            })
            .collect()
    }

    use PodState::*;

    #[test]
    fn ordered_ready_creates_one_at_a_time_in_order() {
        let none = slots(&[(Missing, false); 3], 0);
        assert_eq!(plan(&none, &[], ORDERED), [Action::Create(0)]);
        let first_starting = slots(&[(Starting, true), (Missing, false), (Missing, false)], 0);
        assert_eq!(plan(&first_starting, &[], ORDERED), []);
        let first_up = slots(&[(Healthy, true), (Missing, false), (Missing, false)], 0);
        assert_eq!(plan(&first_up, &[], ORDERED), [Action::Create(1)]);
        assert_eq!(
            plan(&none, &[], PARALLEL),
            [Action::Create(0), Action::Create(1), Action::Create(2)]
        );
        let from_five = slots(&[(Missing, false)], 5);
        assert_eq!(plan(&from_five, &[], ORDERED), [Action::Create(5)]);
    }

    #[test]
    fn a_deleted_pod_is_waited_for_then_recreated() {
        let going = slots(&[(Healthy, true), (Terminating, true), (Healthy, true)], 0);
        assert_eq!(plan(&going, &[], ORDERED), []);
        let gone = slots(&[(Healthy, true), (Missing, true), (Healthy, true)], 0);
        assert_eq!(plan(&gone, &[], ORDERED), [Action::Create(1)]);
        let failed = slots(&[(Finished, true)], 0);
        assert_eq!(plan(&failed, &[], ORDERED), [Action::Delete(0)]);
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let wanted = slots(&[(Healthy, true)], 0);
        let condemned = slots(&[(Healthy, true), (Healthy, true)], 1);
        assert_eq!(plan(&wanted, &condemned, ORDERED), [Action::Delete(2)]);
        let last_going = slots(&[(Healthy, true), (Terminating, true)], 1);
        assert_eq!(plan(&wanted, &last_going, ORDERED), []);
        assert_eq!(
            plan(&wanted, &condemned, PARALLEL),
            [Action::Delete(2), Action::Delete(1)]
        );
        let wanted_starting = slots(&[(Starting, true)], 0);
        assert_eq!(plan(&wanted_starting, &condemned, ORDERED), []);
    }

    #[test]
    fn rolling_update_replaces_from_the_top_down_to_the_partition() {
        let old = slots(&[(Healthy, false); 3], 0);
        assert_eq!(plan(&old, &[], ORDERED), [Action::Delete(2)]);
        let top_new_starting = slots(&[(Healthy, false), (Healthy, false), (Starting, true)], 0);
        assert_eq!(plan(&top_new_starting, &[], ORDERED), []);
        let top_new = slots(&[(Healthy, false), (Healthy, false), (Healthy, true)], 0);
        assert_eq!(plan(&top_new, &[], ORDERED), [Action::Delete(1)]);
        let partitioned = Policy {
            ordered: true,
            partition: Some(2),
        };
        assert_eq!(plan(&top_new, &[], partitioned), []);
        let on_delete = Policy {
            ordered: true,
            partition: None,
        };
        assert_eq!(plan(&old, &[], on_delete), []);
    }
}
