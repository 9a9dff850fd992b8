//! `kubectl apply` of YAML manifests, validated by the server: the Service
//! examples of the Kubernetes docs (seed 002), a NodePort and a Deployment,
//! round trips through `get -o yaml`, re-applies, describe and delete, and
//! invalid manifests.

use super::*;

/// The docs' Service with a selector.
const SELECTOR_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
";

/// The docs' multi-port Service: the same Service, ports named and one more.
const MULTI_PORT_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app: MyApp
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 9376
    - name: https
      protocol: TCP
      port: 443
      targetPort: 9377
";

const EXTERNAL_NAME_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: my-service
  namespace: prod
spec:
  type: ExternalName
  externalName: my.database.example.com
";

const NODE_PORT_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
    - port: 8080
";

fn deployment(replicas: u32) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - containerPort: 80
"
    )
}

impl Cluster {
    /// `kubectl apply -f` of a YAML manifest: (success, stdout, stderr).
    async fn apply(&self, name: &str, manifest: &str) -> (bool, String, String) {
        let file = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&file, manifest).unwrap();
        self.run(&["apply", "-f", file.to_str().unwrap()]).await
    }

    async fn applied(&self, name: &str, manifest: &str) -> String {
        let (ok, stdout, stderr) = self.apply(name, manifest).await;
        assert!(ok, "kubectl apply of {name} failed: {stderr}");
        stdout
    }

    async fn object(&self, args: &[&str]) -> Value {
        let args = [args, &["-o", "json"]].concat();
        serde_json::from_str(&self.ok(&args).await).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_round_trips_and_reapplies() {
    let cluster = Cluster::start().await;

    let out = cluster.applied("selector", SELECTOR_SERVICE).await;
    assert_eq!(out.trim(), "service/my-service created");
    // What was applied comes back, with the defaults and the ClusterIP.
    let yaml = cluster
        .ok(&["get", "svc", "my-service", "-o", "yaml"])
        .await;
    for line in [
        "  name: my-service",
        "  namespace: default",
        "    app: MyApp",
        "  - port: 80",
        "    protocol: TCP",
        "    targetPort: 9376",
        "  sessionAffinity: None",
        "  type: ClusterIP",
        "  internalTrafficPolicy: Cluster",
        "  ipFamilyPolicy: SingleStack",
        "  - IPv4",
        "  clusterIP: 10.",
    ] {
        assert!(yaml.contains(line), "{line:?} missing from\n{yaml}");
    }
    let first = cluster.object(&["get", "svc", "my-service"]).await;
    let ip = first["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert_eq!(first["spec"]["clusterIPs"], json!([ip]));

    // The same manifest again changes nothing.
    let out = cluster.applied("selector", SELECTOR_SERVICE).await;
    assert_eq!(out.trim(), "service/my-service unchanged");
    let again = cluster.object(&["get", "svc", "my-service"]).await;
    assert_eq!(again, first);

    // The multi-port version changes only the ports.
    let out = cluster.applied("multi-port", MULTI_PORT_SERVICE).await;
    assert_eq!(out.trim(), "service/my-service configured");
    let multi = cluster.object(&["get", "svc", "my-service"]).await;
    assert_eq!(
        multi["spec"]["ports"],
        json!([
            { "name": "http", "port": 80, "protocol": "TCP", "targetPort": 9376 },
            { "name": "https", "port": 443, "protocol": "TCP", "targetPort": 9377 },
        ])
    );
    let without_ports = |object: &Value| {
        let mut spec = object["spec"].clone();
        spec.as_object_mut().unwrap().remove("ports");
        spec
    };
    assert_eq!(without_ports(&multi), without_ports(&first));
    assert_eq!(multi["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(multi["metadata"]["generation"], 2);

    // describe reads the Service and what belongs to it.
    let described = cluster.ok(&["describe", "svc", "my-service"]).await;
    for expected in [
        "Name:",
        "my-service",
        "Selector:",
        "app=MyApp",
        "ClusterIP",
        &ip,
        "https  443/TCP",
        "9377/TCP",
    ] {
        assert!(described.contains(expected), "{expected:?} in\n{described}");
    }

    // An ExternalName Service in another namespace has no address.
    // (`kubectl create namespace` would send protobuf, which skiff does not
    // read; a manifest goes as JSON.)
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n";
    cluster.applied("prod", namespace).await;
    let out = cluster.applied("external", EXTERNAL_NAME_SERVICE).await;
    assert_eq!(out.trim(), "service/my-service created");
    let external = cluster
        .object(&["get", "svc", "my-service", "-n", "prod"])
        .await;
    assert_eq!(
        external["spec"],
        json!({ "type": "ExternalName", "externalName": "my.database.example.com", "sessionAffinity": "None" })
    );

    // A NodePort Service shows its allocated port.
    cluster.applied("node-port", NODE_PORT_SERVICE).await;
    let yaml = cluster.ok(&["get", "svc", "web", "-o", "yaml"]).await;
    assert!(yaml.contains("  - nodePort: 3"), "{yaml}");
    assert!(yaml.contains("  externalTrafficPolicy: Cluster"), "{yaml}");

    // A Deployment: created, then only its replicas change.
    let out = cluster.applied("deployment", &deployment(2)).await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let before = cluster.object(&["get", "deploy", "web"]).await;
    assert_eq!(before["spec"]["replicas"], 2);
    let out = cluster.applied("deployment", &deployment(3)).await;
    assert_eq!(out.trim(), "deployment.apps/web configured");
    let after = cluster.object(&["get", "deploy", "web"]).await;
    assert_eq!(after["spec"]["replicas"], 3);
    let mut expected = before["spec"].clone();
    expected["replicas"] = json!(3);
    assert_eq!(after["spec"], expected);

    // delete -f removes what the manifests made.
    let file = cluster.dir.join("multi-port.yaml");
    let out = cluster.ok(&["delete", "-f", file.to_str().unwrap()]).await;
    assert!(out.contains("\"my-service\" deleted"), "{out}");
    assert!(!cluster.run(&["get", "svc", "my-service"]).await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_name_the_field_and_store_nothing() {
    let cluster = Cluster::start().await;
    let cases = [
        (
            SELECTOR_SERVICE.replace("name: my-service", "name: My_Service"),
            "metadata.name: Invalid value: \"My_Service\"",
        ),
        (
            SELECTOR_SERVICE.replace("port: 80", "port: 0"),
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        (
            SELECTOR_SERVICE.replace(
                "      targetPort: 9376\n",
                "      targetPort: 9376\n    - protocol: TCP\n      port: 80\n",
            ),
            "spec.ports[1]: Duplicate value",
        ),
        (
            SELECTOR_SERVICE.replace("  selector:", "  selectr:"),
            "strict decoding error: unknown field \"spec.selectr\"",
        ),
    ];
    for (index, (manifest, expected)) in cases.iter().enumerate() {
        let (ok, _, stderr) = cluster.apply(&format!("bad-{index}"), manifest).await;
        assert!(!ok, "{manifest}");
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
    let names = cluster.ok(&["get", "svc", "-o", "name"]).await;
    assert_eq!(names.trim(), "service/kubernetes");
}
