//! Allocators against a real etcd on loopback ports.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::test_support::Etcd;

/// A client once etcd answers (it takes a moment to start).
async fn client(etcd: &Etcd) -> Kv {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(kv) = Kv::connect(std::slice::from_ref(&etcd.url)).await
            && kv.revision().await.is_ok()
        {
            return kv;
        }
        assert!(Instant::now() < deadline, "etcd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn owner(name: &str) -> Owner {
    Owner::new("default", name, format!("uid-{name}"))
}

/// Allocates until the pool is exhausted, returning what it got.
async fn drain<P: Pool>(alloc: &Allocator<P>, who: &Owner) -> Vec<P::Item> {
    let mut got = Vec::new();
    loop {
        match alloc.allocate(who).await {
            Ok(item) => got.push(item),
            Err(AllocError::Exhausted { .. }) => return got,
            Err(e) => panic!("allocation failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocators_never_collide() {
    let etcd = Etcd::start();
    let (a, b) = (client(&etcd).await, client(&etcd).await);
    let cidr: IpNet = "192.168.10.0/28".parse().unwrap();
    let ports = PortPool::new(30000..=30029).unwrap();

    // Each task allocates for objects of its own, through its own client.
    let ip_tasks = [(a.clone(), "lb-a"), (b.clone(), "lb-b")].map(|(c, name)| {
        let alloc = IpAllocator::load_balancer_ips(c, cidr);
        tokio::spawn(async move { drain(&alloc, &owner(name)).await })
    });
    let port_tasks = [(a, "np-a"), (b, "np-b")].map(|(c, name)| {
        let alloc = PortAllocator::node_ports(c, ports.clone());
        tokio::spawn(async move { drain(&alloc, &owner(name)).await })
    });

    let mut ips = Vec::new();
    for task in ip_tasks {
        ips.extend(task.await.unwrap());
    }
    let unique: HashSet<IpAddr> = ips.iter().copied().collect();
    assert_eq!(ips.len(), 14, "every usable address once: {ips:?}");
    assert_eq!(unique.len(), 14, "duplicates in {ips:?}");
    assert!(!unique.contains(&Ipv4Addr::new(192, 168, 10, 0).into()));
    assert!(!unique.contains(&Ipv4Addr::new(192, 168, 10, 15).into()));

    let mut got = Vec::new();
    for task in port_tasks {
        got.extend(task.await.unwrap());
    }
    let unique: HashSet<u16> = got.iter().copied().collect();
    assert_eq!((got.len(), unique.len()), (30, 30), "{got:?}");
}

#[test]
fn kube_dns_takes_the_tenth_address() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let kube_dns = |cidr: &str| kube_dns_service_ip(cidr.parse().unwrap());
    assert_eq!(kube_dns("10.96.0.0/12"), Some(ip("10.96.0.10")));
    assert_eq!(kube_dns("fd00:10:96::/112"), Some(ip("fd00:10:96::a")));
    assert_eq!(kube_dns("10.96.0.0/29"), None);
}

#[tokio::test]
async fn cluster_ips_reserve_the_kubernetes_address() {
    let etcd = Etcd::start();
    let cidr: IpNet = "10.96.0.0/29".parse().unwrap();
    let alloc = ClusterIpAllocator::cluster_ips(client(&etcd).await, cidr);
    let kubernetes_ip = kubernetes_service_ip(cidr);
    assert_eq!(kubernetes_ip, Ipv4Addr::new(10, 96, 0, 1));

    let mut got = drain(&alloc, &owner("web")).await;
    got.sort();
    let expected: Vec<IpAddr> = (2..=6)
        .map(|i| IpAddr::from(Ipv4Addr::new(10, 96, 0, i)))
        .collect();
    assert_eq!(got, expected);

    let err = alloc.allocate(&owner("web")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "range 10.96.0.0/29 is exhausted: no free IP left"
    );

    let kubernetes = owner("kubernetes");
    alloc
        .allocate_specific(kubernetes_ip, &kubernetes)
        .await
        .unwrap();
    assert_eq!(
        alloc.owner_of(kubernetes_ip).await.unwrap(),
        Some(kubernetes)
    );
    let key = "/registry/skiff/allocations/clusterips/10.96.0.1";
    let stored = client(&etcd).await.get(key).await.unwrap().unwrap();
    let stored: Owner = serde_json::from_slice(&stored.value).unwrap();
    assert_eq!(stored.name, "kubernetes");
}

#[tokio::test]
async fn requested_values() {
    let etcd = Etcd::start();
    let c = client(&etcd).await;
    let ips = ClusterIpAllocator::cluster_ips(c.clone(), DEFAULT_SERVICE_CIDR.parse().unwrap());
    let ports = PortAllocator::node_ports(c, PortPool::new(DEFAULT_NODE_PORT_RANGE).unwrap());
    let (web, api) = (owner("web"), owner("api"));
    let ip = IpAddr::from(Ipv4Addr::new(10, 96, 0, 10));

    ips.allocate_specific(ip, &web).await.unwrap();
    // Asking again for the same object is fine.
    ips.allocate_specific(ip, &web).await.unwrap();
    let err = ips.allocate_specific(ip, &api).await.unwrap_err();
    assert!(matches!(&err, AllocError::AlreadyAllocated { holder, .. } if *holder == web));
    assert_eq!(err.to_string(), "provided IP is already allocated");

    for outside in ["10.96.0.0", "10.112.0.1", "fd00::1"].map(|ip| ip.parse().unwrap()) {
        let err = ips.allocate_specific(outside, &web).await.unwrap_err();
        assert!(matches!(err, AllocError::NotInRange { .. }), "{err}");
    }

    ports.allocate_specific(30080, &web).await.unwrap();
    let err = ports.allocate_specific(30080, &api).await.unwrap_err();
    assert_eq!(err.to_string(), "provided port is already allocated");
    let err = ports.allocate_specific(80, &api).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "provided port 80 is not in the valid range. The range of valid ports is 30000-32767"
    );
    let port = ports.allocate(&api).await.unwrap();
    assert!(DEFAULT_NODE_PORT_RANGE.contains(&port) && port != 30080);
}

#[tokio::test]
async fn release_checks_the_owner() {
    let etcd = Etcd::start();
    let alloc =
        IpAllocator::load_balancer_ips(client(&etcd).await, "192.168.1.8/32".parse().unwrap());
    let (web, api) = (owner("web"), owner("api"));
    // A same-named object recreated with a new uid is another owner.
    let web_again = Owner::new("default", "web", "uid-web-2");

    let ip = alloc.allocate(&web).await.unwrap();
    assert_eq!(ip, IpAddr::from(Ipv4Addr::new(192, 168, 1, 8)));
    for other in [&api, &web_again] {
        let err = alloc.release(ip, other).await.unwrap_err();
        assert!(
            matches!(&err, AllocError::NotOwner { holder, .. } if *holder == web),
            "{err}"
        );
    }
    assert_eq!(alloc.owner_of(ip).await.unwrap(), Some(web.clone()));

    alloc.release(ip, &web).await.unwrap();
    assert_eq!(alloc.owner_of(ip).await.unwrap(), None);
    let err = alloc.release(ip, &web).await.unwrap_err();
    assert_eq!(err.to_string(), "IP 192.168.1.8 is not allocated");

    assert_eq!(alloc.allocate(&api).await.unwrap(), ip);
}

#[tokio::test]
async fn ipv6_cluster_ips_share_the_pool_of_records() {
    let etcd = Etcd::start();
    let c = client(&etcd).await;
    let v6 = ClusterIpAllocator::cluster_ips(c.clone(), "fd00:10:96::/125".parse().unwrap());
    let v4 = ClusterIpAllocator::cluster_ips(c.clone(), "10.96.0.0/29".parse().unwrap());
    let web = owner("web");
    let mut got = drain(&v6, &web).await;
    got.sort();
    let expected: Vec<IpAddr> = (2..=7)
        .map(|i| format!("fd00:10:96::{i}").parse().unwrap())
        .collect();
    assert_eq!(
        got, expected,
        "all but the network and kubernetes addresses"
    );
    assert_eq!(drain(&v4, &web).await.len(), 5, "IPv4 is a pool of its own");
    let key = "/registry/skiff/allocations/clusterips/fd00:10:96::7";
    assert!(c.get(key).await.unwrap().is_some());
    v6.release(expected[0], &web).await.unwrap();
    assert_eq!(v6.allocate(&web).await.unwrap(), expected[0]);
}
