//! Topology hints for a Service's `spec.trafficDistribution`, as
//! kube-controller-manager's trafficdist heuristics write them: every ready
//! endpoint is hinted for its own zone (PreferClose and PreferSameZone) and
//! also for its own node (PreferSameNode). Without a known value no
//! endpoint carries hints, so hints disappear when the field does.

use serde_json::{Value, json};

/// Which hints a Service's endpoints carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hinting {
    None,
    Zone,
    ZoneAndNode,
}

impl Hinting {
    pub(super) fn of(service: &Value) -> Self {
        match service["spec"]["trafficDistribution"].as_str() {
            Some("PreferClose" | "PreferSameZone") => Self::Zone,
            Some("PreferSameNode") => Self::ZoneAndNode,
            _ => Self::None,
        }
    }

    /// Hints `endpoint` (as the controller builds it, with its `zone`,
    /// `nodeName` and conditions) for its zone and node. Endpoints that are
    /// not ready get none: proxies only weigh ready endpoints' hints.
    pub(super) fn apply(self, endpoint: &mut Value) {
        if self == Self::None || endpoint["conditions"]["ready"] != true {
            return;
        }
        let mut hints = serde_json::Map::new();
        if let Some(zone) = endpoint["zone"].as_str() {
            hints.insert("forZones".into(), json!([{ "name": zone }]));
        }
        if let (Self::ZoneAndNode, Some(node)) = (self, endpoint["nodeName"].as_str()) {
            hints.insert("forNodes".into(), json!([{ "name": node }]));
        }
        if !hints.is_empty() {
            endpoint["hints"] = Value::Object(hints);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ready: bool, zone: Option<&str>, node: Option<&str>) -> Value {
        let mut endpoint = json!({ "addresses": ["10.244.1.2"], "conditions": { "ready": ready } });
        if let Some(zone) = zone {
            endpoint["zone"] = json!(zone);
        }
        if let Some(node) = node {
            endpoint["nodeName"] = json!(node);
        }
        endpoint
    }

    fn hints(distribution: Option<&str>, endpoint: &Value) -> Value {
        let service = json!({ "spec": { "trafficDistribution": distribution } });
        let mut endpoint = endpoint.clone();
        Hinting::of(&service).apply(&mut endpoint);
        endpoint["hints"].clone()
    }

    #[test]
    fn prefer_close_and_same_zone_hint_the_zone() {
        let placed = endpoint(true, Some("a"), Some("node1"));
        for distribution in ["PreferClose", "PreferSameZone"] {
            assert_eq!(
                hints(Some(distribution), &placed),
                json!({ "forZones": [{ "name": "a" }] })
            );
        }
        assert_eq!(
            hints(Some("PreferSameZone"), &endpoint(true, None, Some("node1"))),
            Value::Null
        );
    }

    #[test]
    fn prefer_same_node_hints_node_and_zone() {
        assert_eq!(
            hints(
                Some("PreferSameNode"),
                &endpoint(true, Some("a"), Some("node1"))
            ),
            json!({ "forZones": [{ "name": "a" }], "forNodes": [{ "name": "node1" }] })
        );
        assert_eq!(
            hints(Some("PreferSameNode"), &endpoint(true, None, Some("node1"))),
            json!({ "forNodes": [{ "name": "node1" }] })
        );
    }

    #[test]
    fn no_hints_without_a_distribution_or_readiness() {
        let placed = endpoint(true, Some("a"), Some("node1"));
        assert_eq!(hints(None, &placed), Value::Null);
        assert_eq!(hints(Some("Elsewhere"), &placed), Value::Null);
        assert_eq!(
            hints(
                Some("PreferSameNode"),
                &endpoint(false, Some("a"), Some("node1"))
            ),
            Value::Null
        );
    }
}
