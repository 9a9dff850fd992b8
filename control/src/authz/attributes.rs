//! What a request asks to do, in authorization's terms (kube-apiserver's
//! `RequestInfo` and `authorizer.Attributes`), and the message a refusal
//! carries.

use super::user::User;

/// A request on a resource, or on another path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Resource(ResourceAction),
    /// Discovery, health, version, OpenAPI: `verb` is the lowercased method.
    NonResource {
        verb: String,
        path: String,
    },
}

/// A verb on a resource: `namespace` is empty for cluster-scoped requests,
/// `name` for collections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAction {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceAction {
    /// `pods` or `pods/log`, as rules name it.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Who asks to do what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: User,
    pub action: Action,
}

/// The subresources a streaming upgrade opens: creating one is the verb,
/// whatever the method (kube-apiserver also asks for `create` on a
/// WebSocket `GET`).
const STREAMING_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward"];

/// `namespaces/<ns>/<x>` where `x` is a subresource of the namespace, not
/// a resource in it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// The query parameters authorization reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOptions<'a> {
    /// `watch` was true.
    pub watch: bool,
    pub field_selector: Option<&'a str>,
}

/// What `method` on `path` asks, as kube-apiserver's `RequestInfoFactory`
/// reads it.
pub fn action(method: &str, path: &str, options: ListOptions) -> Action {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|part| !part.is_empty())
        .collect();
    let non_resource = || Action::NonResource {
        verb: method.to_ascii_lowercase(),
        path: path.to_owned(),
    };
    let (group, rest) = match parts.as_slice() {
        ["api", rest @ ..] if rest.len() >= 2 => ("", rest),
        ["apis", group, rest @ ..] if rest.len() >= 2 => (*group, rest),
        _ => return non_resource(),
    };
    let (version, mut rest) = (rest[0], &rest[1..]);
    let mut verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_owned();
    let mut namespace = "";
    if let ["namespaces", ns, more @ ..] = rest {
        namespace = ns;
        if let [first, ..] = more
            && !NAMESPACE_SUBRESOURCES.contains(first)
        {
            rest = more;
        }
    }
    let part = |index: usize| rest.get(index).copied().unwrap_or_default().to_owned();
    let mut info = ResourceAction {
        verb: String::new(),
        group: group.to_owned(),
        version: version.to_owned(),
        resource: part(0),
        name: part(1),
        subresource: part(2),
        namespace: namespace.to_owned(),
    };
    if info.name.is_empty() && verb == "get" {
        verb = if options.watch { "watch" } else { "list" }.to_owned();
        // A list of one name is authorized as that name.
        if let Some(name) = options.field_selector.and_then(exact_name) {
            info.name = name;
        }
    }
    if info.name.is_empty() && verb == "delete" {
        verb = "deletecollection".to_owned();
    }
    if STREAMING_SUBRESOURCES.contains(&info.subresource.as_str()) {
        verb = "create".to_owned();
    }
    info.verb = verb;
    Action::Resource(info)
}

/// The name a field selector requires exactly (`metadata.name=x`).
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        (field.trim() == "metadata.name" && !value.is_empty() && !value.contains('/'))
            .then(|| value.trim().to_owned())
    })
}

impl Attributes {
    /// kube-apiserver's `forbiddenMessage`: what the user cannot do.
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.name;
        match &self.action {
            Action::NonResource { verb, path } => {
                format!("User \"{user}\" cannot {verb} path \"{path}\"")
            }
            Action::Resource(info) => {
                let resource = info.combined_resource();
                let scope = if info.namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace \"{}\"", info.namespace)
                };
                format!(
                    "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                    info.verb, info.group
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(method: &str, path: &str, options: ListOptions) -> ResourceAction {
        match action(method, path, options) {
            Action::Resource(info) => info,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn request_info_as_kube_apiserver_reads_it() {
        let list = resource(
            "GET",
            "/api/v1/namespaces/default/pods",
            ListOptions::default(),
        );
        assert_eq!(
            (
                list.verb.as_str(),
                list.resource.as_str(),
                list.namespace.as_str()
            ),
            ("list", "pods", "default")
        );
        let watch = resource(
            "GET",
            "/api/v1/pods",
            ListOptions {
                watch: true,
                field_selector: None,
            },
        );
        assert_eq!(
            (watch.verb.as_str(), watch.namespace.as_str()),
            ("watch", "")
        );
        let one = resource(
            "GET",
            "/api/v1/namespaces/default/secrets",
            ListOptions {
                watch: false,
                field_selector: Some("metadata.name=s1"),
            },
        );
        assert_eq!((one.verb.as_str(), one.name.as_str()), ("list", "s1"));
        let log = resource(
            "GET",
            "/api/v1/namespaces/a/pods/p/log",
            ListOptions::default(),
        );
        assert_eq!(
            (
                log.verb.as_str(),
                log.combined_resource().as_str(),
                log.name.as_str()
            ),
            ("get", "pods/log", "p")
        );
        for sub in ["exec", "attach", "portforward"] {
            let path = format!("/api/v1/namespaces/a/pods/p/{sub}");
            assert_eq!(
                resource("GET", &path, ListOptions::default()).verb,
                "create"
            );
            assert_eq!(
                resource("POST", &path, ListOptions::default()).verb,
                "create"
            );
        }
        let scale = resource(
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/d/scale",
            ListOptions::default(),
        );
        assert_eq!(
            (
                scale.verb.as_str(),
                scale.group.as_str(),
                scale.subresource.as_str()
            ),
            ("patch", "apps", "scale")
        );
        let collection = resource(
            "DELETE",
            "/api/v1/namespaces/a/configmaps",
            ListOptions::default(),
        );
        assert_eq!(collection.verb, "deletecollection");
        let namespace = resource("GET", "/api/v1/namespaces/a", ListOptions::default());
        assert_eq!(
            (
                namespace.resource.as_str(),
                namespace.name.as_str(),
                namespace.namespace.as_str()
            ),
            ("namespaces", "a", "a")
        );
        let finalize = resource(
            "PUT",
            "/api/v1/namespaces/a/finalize",
            ListOptions::default(),
        );
        assert_eq!(
            (finalize.resource.as_str(), finalize.subresource.as_str()),
            ("namespaces", "finalize")
        );
        let nodes = resource("POST", "/api/v1/nodes", ListOptions::default());
        assert_eq!(
            (nodes.verb.as_str(), nodes.namespace.as_str()),
            ("create", "")
        );
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/healthz",
            "/openapi/v2",
            "/version",
        ] {
            assert_eq!(
                action("GET", path, ListOptions::default()),
                Action::NonResource {
                    verb: "get".into(),
                    path: path.into()
                },
                "{path}"
            );
        }
    }

    #[test]
    fn forbidden_messages_are_kube_apiserver_s() {
        let bob = User {
            name: "bob".into(),
            uid: String::new(),
            groups: vec![],
            extra: Default::default(),
        };
        let message = |method, path| {
            Attributes {
                user: bob.clone(),
                action: action(method, path, ListOptions::default()),
            }
            .forbidden_message()
        };
        assert_eq!(
            message("GET", "/api/v1/namespaces/default/pods"),
            "User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            message("GET", "/apis/apps/v1/deployments"),
            "User \"bob\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        assert_eq!(
            message("GET", "/api/v1/namespaces/a/pods/p/log"),
            "User \"bob\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"a\""
        );
        assert_eq!(
            message("GET", "/metrics"),
            "User \"bob\" cannot get path \"/metrics\""
        );
    }
}
