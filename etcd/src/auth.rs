//! etcd's own authentication and RBAC for a cluster whose etcd asks for
//! client certificates (`--client-cert-auth`: the certificate's CN is the
//! etcd user): `root` (role `root`, everything) is the API server and the
//! operator's tools; `skiff-agent` is every node agent, whose role reads
//! only what agents watch and writes nothing: everything an agent writes,
//! and every Secret, ConfigMap or claim it reads, goes through the API
//! server as its node, whose authorizer answers only for the node's own
//! objects.

use crate::keys::{
    ENDPOINT_SLICES, HEALTH, INGRESS_CLASSES, INGRESSES, NODES, PODS, SERVICES, collection_prefix,
};

/// etcd's administrator; the API server's client certificate names it.
pub const ROOT_USER: &str = "root";
/// The agents' etcd user and role; their client certificate names it.
pub const AGENT_USER: &str = "skiff-agent";

/// The key prefixes the agents read: the service proxy's Services and
/// EndpointSlices, the kubelet's Pods (and Services for a pod's
/// environment), the Ingress proxy's Ingresses and IngressClasses, the
/// Nodes (the proxy reads its own for its zone and for `/healthz`,
/// KEP-3836), and the health key a connection checks.
pub fn agent_read_prefixes() -> Vec<String> {
    let mut prefixes: Vec<String> = [
        SERVICES,
        ENDPOINT_SLICES,
        PODS,
        INGRESSES,
        INGRESS_CLASSES,
        NODES,
    ]
    .into_iter()
    .map(|base| collection_prefix(base, None))
    .collect();
    prefixes.push(HEALTH.to_owned());
    prefixes
}

#[cfg(feature = "client")]
mod enable {
    use etcd_client::{
        AuthClient, Permission, PermissionType, RoleRevokePermissionOptions, UserAddOptions,
    };

    use super::{AGENT_USER, ROOT_USER, agent_read_prefixes};
    use crate::kv::{EtcdError, Kv};

    /// Makes users `root` and `skiff-agent` (no passwords: they
    /// authenticate with certificates), their roles, and turns
    /// authentication on. Idempotent: run again against an etcd where it
    /// already ran (authentication on, as `root`), it changes nothing.
    pub async fn enable(kv: &Kv) -> Result<(), EtcdError> {
        let mut auth = kv.client().auth_client();
        let failed = |operation| EtcdError::of(operation, 0);
        let users = auth.user_list().await.map_err(failed("user list"))?;
        let roles = auth.role_list().await.map_err(failed("role list"))?;
        // etcd has the role `root` built in.
        if !roles.roles().iter().any(|role| role == AGENT_USER) {
            auth.role_add(AGENT_USER)
                .await
                .map_err(failed("role add"))?;
        }
        // The role holds exactly what this version grants: a permission an
        // older version gave (agents once wrote pods and Events) is taken
        // back before the current ones are granted.
        let granted = auth
            .role_get(AGENT_USER)
            .await
            .map_err(failed("role get"))?
            .permissions();
        for permission in granted {
            let range = RoleRevokePermissionOptions::new().with_range_end(permission.range_end());
            auth.role_revoke_permission(AGENT_USER, permission.key(), Some(range))
                .await
                .map_err(failed("role revoke-permission"))?;
        }
        grant(&mut auth, agent_read_prefixes(), PermissionType::Read).await?;
        for (user, role) in [(ROOT_USER, "root"), (AGENT_USER, AGENT_USER)] {
            if !users.users().iter().any(|name| name == user) {
                auth.user_add(user, "", Some(UserAddOptions::new().with_no_pwd()))
                    .await
                    .map_err(failed("user add"))?;
            }
            auth.user_grant_role(user, role)
                .await
                .map_err(failed("user grant-role"))?;
        }
        auth.auth_enable().await.map_err(failed("auth enable"))?;
        Ok(())
    }

    /// Grants the agents' role `permission` on each of `prefixes`
    /// (granting again what it has replaces it with the same).
    async fn grant(
        auth: &mut AuthClient,
        prefixes: Vec<String>,
        permission: PermissionType,
    ) -> Result<(), EtcdError> {
        for prefix in prefixes {
            auth.role_grant_permission(
                AGENT_USER,
                Permission::new(permission, prefix).with_prefix(),
            )
            .await
            .map_err(EtcdError::of("role grant-permission", 0))?;
        }
        Ok(())
    }
}

#[cfg(feature = "client")]
pub use enable::enable;
