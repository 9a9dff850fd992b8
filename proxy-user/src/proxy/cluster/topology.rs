//! Topology-aware routing: which of a Service's endpoints this node's
//! cluster-wide traffic goes to, from the EndpointSlice controller's hints
//! and this node's place (its name and its Node's zone label), by
//! kube-proxy's rules (pkg/proxy/topology.go): endpoints hinted for this
//! node, else for this zone, else all of them. A level is used only when
//! every ready endpoint carries hints of its kind and at least one names
//! this node (zone): half-hinted slices, being rewritten, are ignored.

use super::records::Hints;

/// Where this node is, for choosing endpoints.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub node: &'a str,
    pub zone: Option<&'a str>,
}

/// Which endpoints a node's cluster-wide traffic may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode<'a> {
    /// Every one (no usable hints).
    All,
    /// Those hinted for this node.
    Node(&'a str),
    /// Those hinted for this zone.
    Zone(&'a str),
}

impl<'a> Mode<'a> {
    /// The mode the hints of the ready endpoints (`None` for one without
    /// hints) allow at `place`.
    pub fn of<'h>(place: Place<'a>, ready: impl IntoIterator<Item = Option<&'h Hints>>) -> Self {
        let mut any_ready = false;
        let (mut all_node_hinted, mut one_for_node) = (true, false);
        let (mut all_zone_hinted, mut one_for_zone) = (true, false);
        for hints in ready {
            any_ready = true;
            let (nodes, zones) = hints.map_or((&[][..], &[][..]), |h| (&*h.nodes, &*h.zones));
            if nodes.is_empty() {
                all_node_hinted = false;
            } else if names(nodes, place.node) {
                one_for_node = true;
            }
            if zones.is_empty() {
                all_zone_hinted = false;
            } else if place.zone.is_some_and(|zone| names(zones, zone)) {
                one_for_zone = true;
            }
        }
        match place.zone {
            _ if !any_ready => Self::All,
            _ if all_node_hinted && one_for_node => Self::Node(place.node),
            Some(zone) if all_zone_hinted && one_for_zone => Self::Zone(zone),
            _ => Self::All,
        }
    }

    /// Whether an endpoint with `hints` is used in this mode.
    pub fn admits(self, hints: Option<&Hints>) -> bool {
        match self {
            Self::All => true,
            Self::Node(node) => hints.is_some_and(|hints| names(&hints.nodes, node)),
            Self::Zone(zone) => hints.is_some_and(|hints| names(&hints.zones, zone)),
        }
    }
}

fn names(list: &[Box<str>], name: &str) -> bool {
    list.iter().any(|entry| **entry == *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(zones: &[&str], nodes: &[&str]) -> Hints {
        Hints {
            zones: zones.iter().map(|&zone| zone.into()).collect(),
            nodes: nodes.iter().map(|&node| node.into()).collect(),
        }
    }

    const NODE1_IN_A: Place<'static> = Place {
        node: "node1",
        zone: Some("a"),
    };

    #[test]
    fn node_hints_first_then_zone_then_all() {
        let on_node1 = hints(&["a"], &["node1"]);
        let on_node2 = hints(&["a"], &["node2"]);
        let on_node3 = hints(&["b"], &["node3"]);
        let all = [&on_node1, &on_node2, &on_node3];
        assert_eq!(Mode::of(NODE1_IN_A, all.map(Some)), Mode::Node("node1"));
        // node1's endpoint gone: its zone.
        assert_eq!(
            Mode::of(NODE1_IN_A, [Some(&on_node2), Some(&on_node3)]),
            Mode::Zone("a")
        );
        // Nothing in zone a: everything.
        assert_eq!(Mode::of(NODE1_IN_A, [Some(&on_node3)]), Mode::All);
        let mode = Mode::of(NODE1_IN_A, all.map(Some));
        let admitted: Vec<bool> = all.iter().map(|h| mode.admits(Some(h))).collect();
        assert_eq!(admitted, [true, false, false]);
    }

    #[test]
    fn one_unhinted_ready_endpoint_disables_that_level() {
        let zone_only = hints(&["a"], &[]);
        let on_node1 = hints(&["a"], &["node1"]);
        assert_eq!(
            Mode::of(NODE1_IN_A, [Some(&on_node1), Some(&zone_only)]),
            Mode::Zone("a")
        );
        assert_eq!(Mode::of(NODE1_IN_A, [Some(&on_node1), None]), Mode::All);
        assert_eq!(Mode::of(NODE1_IN_A, []), Mode::All);
    }

    #[test]
    fn a_node_without_a_zone_uses_node_hints_or_all() {
        let place = Place {
            node: "node1",
            zone: None,
        };
        let on_node2 = hints(&["a"], &["node2"]);
        assert_eq!(Mode::of(place, [Some(&on_node2)]), Mode::All);
        let on_node1 = hints(&["a"], &["node1"]);
        assert_eq!(Mode::of(place, [Some(&on_node1)]), Mode::Node("node1"));
        assert!(!Mode::Zone("a").admits(None));
    }
}
