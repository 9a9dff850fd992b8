//! Which of the feasible nodes a pod goes to: the least allocated, and
//! away from the nodes that already run pods of the same owner.

use super::filter::Resources;

/// What the scorer knows of one feasible node.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub allocatable: Resources,
    pub used: Resources,
    /// Pods of the same owner (controller) already there.
    pub siblings: usize,
}

/// kube-scheduler's default weight of topology spreading against the
/// resource score's 1.
const SPREAD_WEIGHT: f64 = 2.0;

/// The best node for a pod asking for `wanted`; ties go to the node with
/// fewer pods, then to the first name.
pub fn best<'a>(candidates: &[Candidate<'a>], wanted: Resources) -> Option<&'a str> {
    let most_siblings = candidates.iter().map(|c| c.siblings).max().unwrap_or(0);
    let score = |candidate: &Candidate| {
        let free = |allocatable: f64, used: f64, wanted: f64| {
            if allocatable <= 0.0 {
                0.0
            } else {
                ((allocatable - used - wanted) / allocatable).max(0.0) * 100.0
            }
        };
        let least_allocated = (free(candidate.allocatable.cpu, candidate.used.cpu, wanted.cpu)
            + free(
                candidate.allocatable.memory,
                candidate.used.memory,
                wanted.memory,
            ))
            / 2.0;
        let spread = if most_siblings == 0 {
            100.0
        } else {
            (most_siblings - candidate.siblings) as f64 / most_siblings as f64 * 100.0
        };
        least_allocated + SPREAD_WEIGHT * spread
    };
    candidates
        .iter()
        .max_by(|a, b| {
            score(a)
                .total_cmp(&score(b))
                .then(b.used.pods.total_cmp(&a.used.pods))
                .then(b.name.cmp(a.name))
        })
        .map(|candidate| candidate.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, cpu_used: f64, siblings: usize) -> Candidate<'_> {
        Candidate {
            name,
            allocatable: Resources {
                cpu: 4.0,
                memory: 4e9,
                pods: 110.0,
            },
            used: Resources {
                cpu: cpu_used,
                memory: 0.0,
                pods: siblings as f64,
            },
            siblings,
        }
    }

    #[test]
    fn spreads_siblings_and_prefers_free_nodes() {
        let wanted = Resources {
            pods: 1.0,
            ..Resources::default()
        };
        assert_eq!(
            best(&[candidate("a", 0.0, 1), candidate("b", 0.0, 0)], wanted),
            Some("b")
        );
        assert_eq!(
            best(&[candidate("a", 3.0, 0), candidate("b", 0.0, 0)], wanted),
            Some("b")
        );
        assert_eq!(
            best(&[candidate("a", 0.0, 0), candidate("b", 0.0, 0)], wanted),
            Some("a")
        );
        assert_eq!(best(&[], wanted), None);
    }
}
