//! The objects every cluster has, created by the server at start-up when
//! missing: the system namespaces, the default StorageClass, the default
//! IngressClass `skiff` with its Service `kube-system/skiff-ingress`, the
//! `kubernetes` Service, the cluster DNS Service `kube-system/kube-dns`,
//! the default RBAC roles and bindings and, when asked, the nodes'
//! bootstrap token.

use std::time::Duration;

use serde_json::json;

use super::field_manager;
use super::field_validation::FieldValidation;
use super::registry::{self, SYSTEM_NAMESPACES};
use super::{Api, ApiError, objects};
use crate::alloc::{kube_dns_service_ip, kubernetes_service_ip};
use crate::authz::{RBAC_GROUP, bootstrap};
use crate::bootstrap_token::{self, Token};
use crate::kinds::{
    DEFAULT_CLASS_ANNOTATION, DEFAULT_INGRESS_CLASS_ANNOTATION, INGRESS_SERVICE_NAME,
    INGRESS_SERVICE_NAMESPACE, LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER, SKIFF_INGRESS_CLASS,
    SKIFF_INGRESS_CONTROLLER,
};
use crate::store::{StoreError, object_key};

/// How often a start-up that lost the race for a system Service to another
/// instance looks for the winner's Service before giving up.
const SYSTEM_SERVICE_ATTEMPTS: usize = 10;

impl Api {
    /// Creates the namespaces that always exist, when missing.
    pub async fn ensure_system_namespaces(&self) -> Result<(), ApiError> {
        let namespaces =
            registry::find("", "v1", "namespaces").expect("namespaces are in the table");
        for name in SYSTEM_NAMESPACES {
            let mut namespace = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": name },
                "spec": { "finalizers": ["kubernetes"] },
            });
            objects::prepare_create(&mut namespace, namespaces)?;
            let key = object_key(namespaces.storage, None, name);
            match self.store.create(&key, &namespace).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(error) => return Err(ApiError::from_store(error, namespaces, name)),
            }
            self.ensure_default_service_account(name).await?;
        }
        Ok(())
    }

    /// The `default` ServiceAccount of a system namespace, which pods
    /// there run as, present before the first pod even without the
    /// controllers (whose serviceaccount controller fills in the other
    /// namespaces).
    async fn ensure_default_service_account(&self, namespace: &str) -> Result<(), ApiError> {
        let accounts =
            registry::find("", "v1", "serviceaccounts").expect("service accounts are in the table");
        let mut account = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": { "name": "default", "namespace": namespace },
        });
        objects::prepare_create(&mut account, accounts)?;
        let key = object_key(accounts.storage, Some(namespace), "default");
        match self.store.create(&key, &account).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(error) => Err(ApiError::from_store(error, accounts, "default")),
        }
    }

    /// Creates the StorageClass `local-path` when missing: the default
    /// class, served by the controllers' local-path provisioner, which
    /// makes a volume on the node the scheduler picks for the first pod.
    pub async fn ensure_default_storage_class(&self) -> Result<(), ApiError> {
        let classes = registry::find("storage.k8s.io", "v1", "storageclasses")
            .expect("storage classes are in the table");
        let class = json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": LOCAL_PATH_CLASS,
                "annotations": { DEFAULT_CLASS_ANNOTATION: "true" },
            },
            "provisioner": LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        });
        self.create_unless_present(classes, None, class).await
    }

    /// Creates the IngressClass `skiff` when missing: the default class,
    /// served by the agents' Ingress proxies.
    pub async fn ensure_default_ingress_class(&self) -> Result<(), ApiError> {
        let classes = registry::find("networking.k8s.io", "v1", "ingressclasses")
            .expect("ingress classes are in the table");
        let class = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {
                "name": SKIFF_INGRESS_CLASS,
                "annotations": { DEFAULT_INGRESS_CLASS_ANNOTATION: "true" },
            },
            "spec": { "controller": SKIFF_INGRESS_CONTROLLER },
        });
        self.create_unless_present(classes, None, class).await
    }

    /// Creates `kube-system/skiff-ingress` when missing: a LoadBalancer
    /// Service without a selector whose load balancer IP fronts ports 80
    /// and 443 of every Ready node (the ingress controller writes its
    /// EndpointSlice), as k3s's servicelb fronts Traefik.
    pub async fn ensure_ingress_service(&self) -> Result<(), ApiError> {
        let services = registry::find("", "v1", "services").expect("services are in the table");
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": INGRESS_SERVICE_NAME,
                "namespace": INGRESS_SERVICE_NAMESPACE,
                "labels": { "app.kubernetes.io/name": INGRESS_SERVICE_NAME },
            },
            "spec": {
                "type": "LoadBalancer",
                "allocateLoadBalancerNodePorts": false,
                "ports": [
                    { "name": "http", "port": 80, "protocol": "TCP", "targetPort": 80 },
                    { "name": "https", "port": 443, "protocol": "TCP", "targetPort": 443 },
                ],
            },
        });
        self.create_unless_present(services, Some(INGRESS_SERVICE_NAMESPACE), service)
            .await
    }

    /// Creates the default ClusterRoles and ClusterRoleBindings that are
    /// missing (kube-apiserver's `rbac/bootstrap-roles` hook); the ones
    /// there are left as they are.
    pub async fn ensure_bootstrap_policy(&self) -> Result<(), ApiError> {
        let roles = registry::find(RBAC_GROUP, "v1", "clusterroles")
            .expect("cluster roles are in the table");
        let bindings = registry::find(RBAC_GROUP, "v1", "clusterrolebindings")
            .expect("cluster role bindings are in the table");
        for role in bootstrap::cluster_roles() {
            self.create_unless_present(roles, None, role).await?;
        }
        for binding in bootstrap::cluster_role_bindings() {
            self.create_unless_present(bindings, None, binding).await?;
        }
        Ok(())
    }

    /// Creates `object` as the server, unless it exists.
    /// Creates the Secret that makes `token` a bootstrap token, when
    /// missing.
    pub async fn ensure_bootstrap_token(&self, token: &Token) -> Result<(), ApiError> {
        let secrets = registry::find("", "v1", "secrets").expect("secrets are in the table");
        let secret =
            token.secret("the nodes' bootstrap token (skiff-control --bootstrap-token-file)");
        self.create_unless_present(secrets, Some(bootstrap_token::NAMESPACE), secret)
            .await
    }

    async fn create_unless_present(
        &self,
        resource: &'static registry::Resource,
        namespace: Option<&str>,
        object: serde_json::Value,
    ) -> Result<(), ApiError> {
        match self
            .create(
                resource,
                namespace,
                object,
                FieldValidation::Strict,
                Some(&field_manager::server()),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Already there, or another instance made it meanwhile.
            Err(error) if error.code == 409 => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Creates `default/kubernetes`, the Service in front of the API server,
    /// when missing: the service range's first address, port 443 to the
    /// server's `port` (as kube-apiserver does; skiff writes no endpoints for
    /// it).
    pub async fn ensure_kubernetes_service(&self, port: u16) -> Result<(), ApiError> {
        let ip = kubernetes_service_ip(self.config.network.cluster_ip_ranges.primary()).to_string();
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": { "component": "apiserver", "provider": "kubernetes" },
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ip,
                "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": port }],
                "sessionAffinity": "None",
            },
        });
        self.ensure_system_service("default", "kubernetes", service)
            .await
    }

    /// Creates `kube-system/kube-dns`, the cluster DNS Service, when
    /// missing: the service range's tenth address (what kubeadm gives it,
    /// and what agents write into pods' resolv.conf), DNS over UDP and TCP
    /// on port 53. It selects no pods: every agent serves it node-locally,
    /// as NodeLocal DNSCache does. A range too small for a tenth address
    /// gets none.
    pub async fn ensure_kube_dns_service(&self) -> Result<(), ApiError> {
        let Some(ip) = kube_dns_service_ip(self.config.network.cluster_ip_ranges.primary()) else {
            tracing::warn!(
                range = %self.config.network.cluster_ip_ranges.primary(),
                "the service range has no tenth address: not creating kube-system/kube-dns"
            );
            return Ok(());
        };
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {
                    "k8s-app": "kube-dns",
                    "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS",
                },
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ip.to_string(),
                "ports": [
                    { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                    { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
                ],
                "sessionAffinity": "None",
            },
        });
        self.ensure_system_service("kube-system", "kube-dns", service)
            .await
    }

    /// Creates a Service the server owns when it is missing; another
    /// instance racing to create it is waited for.
    async fn ensure_system_service(
        &self,
        namespace: &str,
        name: &str,
        service: serde_json::Value,
    ) -> Result<(), ApiError> {
        let services = registry::find("", "v1", "services").expect("services are in the table");
        let key = object_key(services.storage, Some(namespace), name);
        let mut last_error = None;
        for _ in 0..SYSTEM_SERVICE_ATTEMPTS {
            if self.store.get(&key).await.is_ok() {
                return Ok(());
            }
            let strict = FieldValidation::Strict;
            match self
                .create(
                    services,
                    Some(namespace),
                    service.clone(),
                    strict,
                    Some(&field_manager::server()),
                )
                .await
            {
                Ok(_) => return Ok(()),
                // Another instance is creating it: its Service shows soon.
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last_error.expect("at least one attempt"))
    }
}
