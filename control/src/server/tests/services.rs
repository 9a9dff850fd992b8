//! Service allocations end to end: ClusterIPs, NodePorts, health check
//! NodePorts and LoadBalancer IPs, with the records in etcd checked against
//! what the Services hold.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::alloc::LoadBalancerPools;
use crate::api::ServiceNetwork;
use skiff_etcd::keys::{ALLOCATIONS, collection_prefix};

use super::*;

const LB_POOL: &str = "172.18.255.0/28";

fn with_network(network: ServiceNetwork) -> ApiConfig {
    ApiConfig {
        network,
        ..ApiConfig::default()
    }
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let cidr: IpNet = cidr.parse().unwrap();
    let ip: IpAddr = ip.parse().unwrap();
    cidr.contains(&ip)
}

/// The allocation records in etcd, as `kind/value`.
async fn records(etcd: &Etcd) -> BTreeSet<String> {
    let prefix = collection_prefix(ALLOCATIONS, None);
    let keys = etcd.store().await.client().keys(&prefix).await.unwrap();
    keys.into_iter()
        .map(|key| key[prefix.len()..].to_owned())
        .collect()
}

/// What the stored Services hold, as the records name it.
async fn holdings(cluster: &Cluster) -> BTreeSet<String> {
    let (code, list) = cluster.get_json("/api/v1/services").await;
    assert_eq!(code, 200, "{list}");
    let mut held = BTreeSet::new();
    for service in list["items"].as_array().unwrap() {
        let spec = &service["spec"];
        for ip in spec["clusterIPs"].as_array().into_iter().flatten() {
            let ip = ip.as_str().unwrap();
            if ip != "None" {
                held.insert(format!("clusterips/{ip}"));
            }
        }
        for port in spec["ports"].as_array().into_iter().flatten() {
            if let Some(node_port) = port["nodePort"].as_u64() {
                held.insert(format!("nodeports/{node_port}"));
            }
        }
        if let Some(port) = spec["healthCheckNodePort"].as_u64() {
            held.insert(format!("nodeports/{port}"));
        }
        let ingress = &service["status"]["loadBalancer"]["ingress"];
        for entry in ingress.as_array().into_iter().flatten() {
            held.insert(format!("loadbalancerips/{}", entry["ip"].as_str().unwrap()));
        }
    }
    held
}

async fn get_service(cluster: &Cluster, name: &str) -> Value {
    let path = format!("/api/v1/namespaces/default/services/{name}");
    let (code, service) = cluster.get_json(&path).await;
    assert_eq!(code, 200, "{service}");
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_addresses_and_ports() {
    let cluster = Cluster::start_with(with_network(ServiceNetwork {
        load_balancer_pools: LB_POOL.parse().unwrap(),
        ..ServiceNetwork::default()
    }))
    .await;

    // The API server's own Service, on the range's first address.
    let kubernetes = get_service(&cluster, "kubernetes").await;
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(kubernetes["spec"]["ports"][0]["port"], 443);
    assert_eq!(
        kubernetes["spec"]["ports"][0]["targetPort"],
        cluster.server.addrs[0].port()
    );

    // A ClusterIP Service gets an address and upstream's defaults.
    let (ok, _, stderr) = cluster.send("create", &service("web")).await;
    assert!(ok, "{stderr}");
    let web = get_service(&cluster, "web").await;
    let spec = &web["spec"];
    let ip = spec["clusterIP"].as_str().unwrap();
    assert!(in_cidr(ip, "10.96.0.0/12") && ip != "10.96.0.1", "{ip}");
    assert_eq!(spec["clusterIPs"], json!([ip]));
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["type"], "ClusterIP");
    assert!(spec.get("externalTrafficPolicy").is_none(), "{spec}");
    assert!(spec["ports"][0].get("nodePort").is_none(), "{spec}");

    // NodePorts: as requested, else picked; TCP and UDP of one port share.
    let node_port = manifest(
        "np",
        json!({
            "type": "NodePort",
            "selector": { "app": "np" },
            "ports": [
                { "name": "http", "port": 80, "nodePort": 30080 },
                { "name": "dns", "port": 53, "protocol": "UDP" },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
            ],
        }),
    );
    let (ok, _, stderr) = cluster.send("create", &node_port).await;
    assert!(ok, "{stderr}");
    let np = get_service(&cluster, "np").await;
    let ports = &np["spec"]["ports"];
    assert_eq!(ports[0]["nodePort"], 30080);
    assert_eq!(ports[0]["targetPort"], 80);
    let dns = ports[1]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&dns) && dns != 30080, "{dns}");
    assert_eq!(ports[2]["nodePort"], dns);
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");

    // A NodePort or ClusterIP someone holds is a 422 naming the field, and
    // nothing is stored.
    let mut clash = node_port.clone();
    clash["metadata"]["name"] = json!("clash");
    clash["spec"]["ports"] = json!([{ "port": 81, "nodePort": 30080 }]);
    let (ok, _, stderr) = cluster.send("create", &clash).await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "Service \"clash\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{stderr}"
    );
    let mut same_ip = service("same-ip");
    same_ip["spec"]["clusterIP"] = json!(ip);
    let (ok, _, stderr) = cluster.send("create", &same_ip).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
        )),
        "{stderr}"
    );
    let (code, _) = cluster
        .get_json("/api/v1/namespaces/default/services/clash")
        .await;
    assert_eq!(code, 404);

    // A LoadBalancer gets an ingress IP from the pool, NodePorts and, with
    // externalTrafficPolicy Local, a health check NodePort.
    let load_balancer = manifest(
        "lb",
        json!({
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": { "app": "lb" },
            "ports": [{ "port": 443, "targetPort": 8443 }],
        }),
    );
    let (ok, _, stderr) = cluster.send("create", &load_balancer).await;
    assert!(ok, "{stderr}");
    let lb = get_service(&cluster, "lb").await;
    let lb_ip = lb["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(in_cidr(&lb_ip, LB_POOL), "{lb}");
    let health = lb["spec"]["healthCheckNodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&health), "{lb}");
    assert!(
        lb["spec"]["ports"][0]["nodePort"].as_u64().is_some(),
        "{lb}"
    );
    let row = cluster.ok(&["get", "svc", "lb", "--no-headers"]).await;
    assert!(row.contains(&lb_ip) && row.contains("443:"), "{row}");
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);

    // Updates keep what was allocated: a replace without the ClusterIP.
    let mut replaced = service("web");
    replaced["metadata"]["labels"]["tier"] = json!("front");
    let (ok, _, stderr) = cluster.send("replace", &replaced).await;
    assert!(ok, "{stderr}");
    assert_eq!(get_service(&cluster, "web").await["spec"]["clusterIP"], ip);

    // A type change gives back what the new type does not use.
    let to_cluster_ip = r#"{"spec":{"type":"ClusterIP"}}"#;
    for name in ["np", "lb"] {
        cluster
            .ok(&["patch", "svc", name, "-p", to_cluster_ip])
            .await;
    }
    let np = get_service(&cluster, "np").await;
    assert!(np["spec"]["ports"][0].get("nodePort").is_none(), "{np}");
    assert!(np["spec"].get("externalTrafficPolicy").is_none(), "{np}");
    let lb = get_service(&cluster, "lb").await;
    assert_eq!(lb["status"]["loadBalancer"], json!({}), "{lb}");
    assert!(lb["spec"].get("healthCheckNodePort").is_none(), "{lb}");
    let (ok, _, stderr) = cluster.send("create", &clash).await;
    assert!(ok, "30080 was released: {stderr}");

    // A delete gives everything back.
    cluster.ok(&["delete", "svc", "web"]).await;
    let (ok, _, stderr) = cluster.send("create", &same_ip).await;
    assert!(ok, "{ip} was released: {stderr}");
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_hand_out_the_same_value() {
    // Small ranges, so the two instances contend for every value.
    let network = ServiceNetwork {
        cluster_ip_ranges: "10.96.0.0/26".parse().unwrap(),
        node_port_range: 30000..=30039,
        load_balancer_pools: LoadBalancerPools::default(),
    };
    let a = Cluster::start_with(with_network(network.clone())).await;
    let b = a.another_instance(with_network(network)).await;

    let path = "/api/v1/namespaces/default/services";
    tokio::join!(
        create_node_ports(&a, "a", 0..20),
        create_node_ports(&b, "b", 0..20)
    );

    let (_, list) = a.get_json(path).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 41, "40 and kubernetes");
    let ips: BTreeSet<&str> = items
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 41, "a ClusterIP given twice");
    let ports: BTreeSet<u64> = items
        .iter()
        .filter_map(|s| s["spec"]["ports"][0]["nodePort"].as_u64())
        .collect();
    assert_eq!(ports, (30000..=30039).collect(), "a NodePort given twice");
    assert_eq!(records(&a.etcd).await, holdings(&a).await);

    let (code, body) = b.send_json("POST", path, &node_port_service("b-20")).await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("range 30000-30039 is exhausted"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_services_get_an_address_per_family() {
    let cluster = Cluster::start_with(with_network(ServiceNetwork {
        cluster_ip_ranges: "10.96.0.0/16,fd00:10:96::/112".parse().unwrap(),
        ..ServiceNetwork::default()
    }))
    .await;
    let path = "/api/v1/namespaces/default/services";
    let create = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["ports"] = json!([{ "port": 80 }]);
        spec["selector"] = json!({ "app": name });
        manifest(name, spec)
    };
    let spec_of = |service: &Value| service["spec"].clone();

    let (code, dual) = cluster
        .send_json(
            "POST",
            path,
            &create("dual", json!({ "ipFamilyPolicy": "RequireDualStack" })),
        )
        .await;
    assert_eq!(code, 201, "{dual}");
    let spec = spec_of(&dual);
    assert_eq!(spec["ipFamilies"], json!(["IPv4", "IPv6"]));
    let ips: Vec<String> = serde_json::from_value(spec["clusterIPs"].clone()).unwrap();
    assert_eq!(ips.len(), 2, "{spec}");
    assert!(in_cidr(&ips[0], "10.96.0.0/16"), "{spec}");
    assert!(ips[1].starts_with("fd00:10:96::"), "{spec}");
    assert_eq!(spec["clusterIP"], ips[0].as_str());

    let (code, v6) = cluster
        .send_json(
            "POST",
            path,
            &create("v6", json!({ "ipFamilies": ["IPv6"] })),
        )
        .await;
    assert_eq!(code, 201, "{v6}");
    assert_eq!(spec_of(&v6)["ipFamilyPolicy"], "SingleStack");
    assert!(
        spec_of(&v6)["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("fd00:10:96::")
    );
    let (code, v4) = cluster
        .send_json("POST", path, &create("v4", json!({})))
        .await;
    assert_eq!(code, 201, "{v4}");
    assert_eq!(spec_of(&v4)["ipFamilies"], json!(["IPv4"]));
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);

    // A v6 address someone holds is a 422 against clusterIPs.
    let taken = ips[1].clone();
    let clash = create(
        "clash",
        json!({ "ipFamilyPolicy": "PreferDualStack", "clusterIP": "10.96.5.5",
                "clusterIPs": ["10.96.5.5", taken] }),
    );
    let (code, status) = cluster.send_json("POST", path, &clash).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        format!(
            "Service \"clash\" is invalid: spec.clusterIPs: Invalid value: []string{{\"10.96.5.5\", \"{taken}\"}}: failed to allocate IP {taken}: provided IP is already allocated"
        )
    );
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);

    // Downgrade: SingleStack with the same values gives back the second.
    let mut downgrade = dual.clone();
    downgrade["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    let (code, downgraded) = cluster
        .send_json("PUT", &format!("{path}/dual"), &downgrade)
        .await;
    assert_eq!(code, 200, "{downgraded}");
    assert_eq!(spec_of(&downgraded)["clusterIPs"], json!([ips[0]]));
    assert_eq!(spec_of(&downgraded)["ipFamilies"], json!(["IPv4"]));
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);

    // Upgrade: PreferDualStack on a dual-stack cluster adds an IPv6 one.
    let mut upgrade = downgraded.clone();
    upgrade["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
    let (code, upgraded) = cluster
        .send_json("PUT", &format!("{path}/dual"), &upgrade)
        .await;
    assert_eq!(code, 200, "{upgraded}");
    let spec = spec_of(&upgraded);
    assert_eq!(spec["ipFamilies"], json!(["IPv4", "IPv6"]));
    assert_eq!(spec["clusterIPs"][0], ips[0].as_str());
    assert!(
        spec["clusterIPs"][1]
            .as_str()
            .unwrap()
            .starts_with("fd00:10:96::")
    );

    // Dropping the second IP without SingleStack is refused.
    let mut dropped = upgraded.clone();
    dropped["spec"]["clusterIPs"] = json!([ips[0]]);
    let (code, status) = cluster
        .send_json("PUT", &format!("{path}/dual"), &dropped)
        .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains(
            "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be 'SingleStack' to release the secondary cluster IP"
        ),
        "{status}"
    );

    for name in ["dual", "v6", "v4"] {
        let (code, body) = cluster
            .send_json("DELETE", &format!("{path}/{name}"), &json!({}))
            .await;
        assert_eq!(code, 200, "{body}");
    }
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_load_balancers_get_an_ingress_ip_per_family() {
    // Three usable IPv6 addresses (kube-system/skiff-ingress takes one of
    // the IPv4 ones).
    let (v4_pool, v6_pool) = ("172.18.255.0/29", "fd00:172:18:255::/126");
    let network = ServiceNetwork {
        cluster_ip_ranges: "10.96.0.0/16,fd00:10:96::/112".parse().unwrap(),
        load_balancer_pools: format!("{v4_pool},{v6_pool}").parse().unwrap(),
        ..ServiceNetwork::default()
    };
    let cluster = Cluster::start_with(with_network(network.clone())).await;
    let path = "/api/v1/namespaces/default/services";
    let load_balancer = |name: &str, spec: Value| {
        let mut spec = spec;
        spec["type"] = json!("LoadBalancer");
        spec["ports"] = json!([{ "port": 80 }]);
        spec["selector"] = json!({ "app": name });
        manifest(name, spec)
    };
    let ingress_ips = |service: &Value| -> Vec<String> {
        let ingress = service["status"]["loadBalancer"]["ingress"].as_array();
        ingress
            .into_iter()
            .flatten()
            .map(|entry| {
                assert_eq!(entry["ipMode"], "VIP", "{service}");
                entry["ip"].as_str().unwrap().to_owned()
            })
            .collect()
    };

    // Dual-stack: one per family, in ipFamilies' order.
    let (code, dual) = cluster
        .send_json(
            "POST",
            path,
            &load_balancer(
                "dual",
                json!({ "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"] }),
            ),
        )
        .await;
    assert_eq!(code, 201, "{dual}");
    let dual_ips = ingress_ips(&dual);
    assert_eq!(dual_ips.len(), 2, "{dual}");
    assert!(in_cidr(&dual_ips[0], v6_pool), "{dual}");
    assert!(in_cidr(&dual_ips[1], v4_pool), "{dual}");
    let row = cluster.ok(&["get", "svc", "dual", "--no-headers"]).await;
    assert!(
        row.contains(&dual_ips[0]) && row.contains(&dual_ips[1]),
        "{row}"
    );

    // Single-stack IPv6: an IPv6 one, the asked one when it is in the pool.
    let (code, v6) = cluster
        .send_json(
            "POST",
            path,
            &load_balancer("v6", json!({ "ipFamilies": ["IPv6"] })),
        )
        .await;
    assert_eq!(code, 201, "{v6}");
    let v6_ips = ingress_ips(&v6);
    assert!(v6_ips.len() == 1 && in_cidr(&v6_ips[0], v6_pool), "{v6}");
    let free = (1..=3)
        .map(|host| format!("fd00:172:18:255::{host}"))
        .find(|ip| *ip != dual_ips[0] && *ip != v6_ips[0])
        .unwrap();
    let outside = load_balancer(
        "outside",
        json!({ "ipFamilies": ["IPv6"], "loadBalancerIP": "fd00:1::1" }),
    );
    let (code, status) = cluster.send_json("POST", path, &outside).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        format!(
            "Service \"outside\" is invalid: spec.loadBalancerIP: Invalid value: \"fd00:1::1\": provided IP fd00:1::1 is not in the valid range. The range of valid IPs is {v6_pool}"
        )
    );
    let (code, asked) = cluster
        .send_json(
            "POST",
            path,
            &load_balancer(
                "asked",
                json!({ "ipFamilies": ["IPv6"], "loadBalancerIP": free }),
            ),
        )
        .await;
    assert_eq!(code, 201, "{asked}");
    assert_eq!(ingress_ips(&asked), std::slice::from_ref(&free));
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);

    // The IPv6 pool is exhausted: refused as an exhausted IPv4 pool is.
    let (code, status) = cluster
        .send_json(
            "POST",
            path,
            &load_balancer("more", json!({ "ipFamilies": ["IPv6"] })),
        )
        .await;
    assert_eq!(code, 500, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains(&format!("range {v6_pool} is exhausted")),
        "{status}"
    );
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);

    // Downgrading to the secondary family's single stack gives back the
    // other family's ingress IP.
    let mut downgrade = dual.clone();
    downgrade["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    downgrade["spec"]["ipFamilies"] = json!(["IPv6"]);
    downgrade["spec"]["clusterIPs"] = json!([dual["spec"]["clusterIPs"][0]]);
    let (code, downgraded) = cluster
        .send_json("PUT", &format!("{path}/dual"), &downgrade)
        .await;
    assert_eq!(code, 200, "{downgraded}");
    assert_eq!(ingress_ips(&downgraded), [dual_ips[0].clone()]);
    assert_eq!(records(&cluster.etcd).await, holdings(&cluster).await);

    // An instance with an IPv4 pool only gives a dual-stack Service its
    // IPv4 ingress IP alone, as one without pools gives none.
    let v4_only = ServiceNetwork {
        load_balancer_pools: v4_pool.parse().unwrap(),
        ..network
    };
    let other = cluster.another_instance(with_network(v4_only)).await;
    let (code, half) = other
        .send_json(
            "POST",
            path,
            &load_balancer("half", json!({ "ipFamilyPolicy": "RequireDualStack" })),
        )
        .await;
    assert_eq!(code, 201, "{half}");
    let half_ips = ingress_ips(&half);
    assert!(
        half_ips.len() == 1 && in_cidr(&half_ips[0], v4_pool),
        "{half}"
    );

    for name in ["dual", "v6", "asked", "half"] {
        let (code, body) = cluster
            .send_json("DELETE", &format!("{path}/{name}"), &json!({}))
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let records = records(&cluster.etcd).await;
    assert_eq!(records, holdings(&cluster).await);
    for ip in dual_ips
        .iter()
        .chain(&v6_ips)
        .chain(&half_ips)
        .chain([&free])
    {
        let record = format!("loadbalancerips/{ip}");
        assert!(!records.contains(&record), "{ip} is given back");
    }
}

fn manifest(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn node_port_service(name: &str) -> Value {
    manifest(
        name,
        json!({ "type": "NodePort", "ports": [{ "port": 80 }] }),
    )
}

/// Creates `<prefix>-<i>` NodePort Services one after the other.
async fn create_node_ports(cluster: &Cluster, prefix: &str, indices: std::ops::Range<usize>) {
    for index in indices {
        let service = node_port_service(&format!("{prefix}-{index}"));
        let (code, body) = cluster
            .send_json("POST", "/api/v1/namespaces/default/services", &service)
            .await;
        assert_eq!(code, 201, "{body}");
    }
}
