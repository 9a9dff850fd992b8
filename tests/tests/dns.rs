//! Cluster DNS end to end: from a pod, through its own resolv.conf and the
//! node-local `kube-system/kube-dns` frontend, the C library's resolver
//! finds a Service and a StatefulSet pod by short name (search list and
//! ndots), and busybox's nslookup finds a Service by FQDN, a headless Service's endpoints, a
//! StatefulSet pod's name, SRV and PTR records, an ExternalName's CNAME
//! and a pod's A record; a deleted Service stops resolving.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::time::Duration;

use serde_json::Value;
use skiff_tests::Testbed;

const TIMEOUT: Duration = Duration::from_secs(90);

const OBJECTS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: skiff/echo
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: echo
  labels: { app: echo }
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: skiff/busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    ports: [{ name: http, containerPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: { app: echo }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ name: web, port: 80 }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 1
  selector:
    matchLabels: { app: web }
  template:
    metadata:
      labels: { app: web }
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: skiff/busybox
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        ports: [{ name: web, containerPort: 80 }]
---
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: db.example.com
"#;

fn json(testbed: &Testbed, args: &[&str]) -> Value {
    testbed.kubectl_json(args)
}

fn ready_ip(testbed: &Testbed, pod: &str) -> Option<String> {
    let pod: Value = serde_json::from_str(
        &testbed
            .run_kubectl(&["get", "pod", pod, "-o", "json"], "")
            .ok()?,
    )
    .ok()?;
    let ready = pod["status"]["conditions"]
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let ip = pod["status"]["podIP"].as_str()?;
    (ready && !ip.is_empty()).then(|| ip.to_owned())
}

/// busybox's nslookup in the client pod, through its resolv.conf: what
/// it printed, and whether it succeeded.
fn nslookup(testbed: &Testbed, args: &[&str]) -> (String, bool) {
    let script = r#"busybox nslookup "$@" 2>&1; echo "exit=$?""#;
    let mut argv = vec!["exec", "client", "--", "sh", "-c", script, "sh"];
    argv.extend(args);
    let out = testbed
        .run_kubectl(&argv, "")
        .unwrap_or_else(|e| format!("{e:#}"));
    let ok = out.ends_with("exit=0\n");
    (out, ok)
}

/// Waits until nslookup `args` succeeds with output containing `wanted`.
fn resolves(testbed: &Testbed, args: &[&str], wanted: &str) {
    skiff_tests::eventually(
        &format!("nslookup {args:?} to show {wanted}"),
        TIMEOUT,
        || {
            let (out, ok) = nslookup(testbed, args);
            (ok && out.contains(wanted)).then_some(())
        },
    );
}

#[test]
fn pods_find_services_and_pods_by_name() {
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    testbed.kubectl_ok(&["apply", "-f", "-"], OBJECTS);

    // skiff-control made the cluster DNS Service at the range's tenth address.
    let kube_dns = json(
        &testbed,
        &["get", "service", "kube-dns", "-n", "kube-system"],
    );
    assert_eq!(kube_dns["spec"]["clusterIP"], "10.96.0.10");

    let echo_ip = json(&testbed, &["get", "service", "echo"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let what = "client, echo and web-0 to be ready";
    let (_, _, web0_ip) = skiff_tests::eventually(what, TIMEOUT, || {
        Some((
            ready_ip(&testbed, "client")?,
            ready_ip(&testbed, "echo")?,
            ready_ip(&testbed, "web-0")?,
        ))
    });
    let resolv = testbed.kubectl_ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"], "");
    assert_eq!(
        resolv,
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );

    // The FQDN, from the nameserver the pod's resolv.conf names.
    resolves(&testbed, &["echo.default.svc.cluster.local"], &echo_ip);
    // Short names through the C library's resolver, which applies the
    // search list and ndots (busybox's nslookup applies neither).
    for (name, wanted) in [
        ("echo", &echo_ip),
        ("echo.default", &echo_ip),
        ("echo.default.svc", &echo_ip),
        ("web-0.nginx", &web0_ip),
    ] {
        let out = testbed.kubectl_ok(&["exec", "client", "--", "skiff-echo", "resolve", name], "");
        assert_eq!(out.trim(), wanted.as_str(), "{name}");
    }
    // The headless Service's ready endpoint, and the StatefulSet pod's name.
    resolves(&testbed, &["nginx.default.svc.cluster.local"], &web0_ip);
    resolves(
        &testbed,
        &["web-0.nginx.default.svc.cluster.local"],
        &web0_ip,
    );
    // SRV: the Service's named port; the headless endpoint's.
    resolves(
        &testbed,
        &["-type=srv", "_http._tcp.echo.default.svc.cluster.local"],
        "80 echo.default.svc.cluster.local",
    );
    resolves(
        &testbed,
        &["-type=srv", "_web._tcp.nginx.default.svc.cluster.local"],
        "80 web-0.nginx.default.svc.cluster.local",
    );
    // ExternalName, a pod's dashed name, PTR of a ClusterIP.
    resolves(
        &testbed,
        &["-type=cname", "ext.default.svc.cluster.local"],
        "db.example.com",
    );
    let dashed = web0_ip.replace('.', "-");
    resolves(
        &testbed,
        &[&format!("{dashed}.default.pod.cluster.local")],
        &web0_ip,
    );
    resolves(&testbed, &[&echo_ip], "echo.default.svc.cluster.local");

    // An unknown name in the cluster domain is NXDOMAIN.
    let (unknown, ok) = nslookup(&testbed, &["nothing.default.svc.cluster.local"]);
    assert!(!ok && unknown.contains("NXDOMAIN"), "{unknown}");

    // A deleted Service stops resolving.
    testbed.kubectl_ok(&["delete", "service", "echo"], "");
    skiff_tests::eventually("echo to stop resolving", TIMEOUT, || {
        let (out, ok) = nslookup(&testbed, &["echo.default.svc.cluster.local"]);
        (!ok && out.contains("NXDOMAIN")).then_some(())
    });
}
