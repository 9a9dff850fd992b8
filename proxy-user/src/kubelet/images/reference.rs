//! Image references normalised the way containerd records them, so that
//! `redis`, `library/redis` and `docker.io/library/redis:latest` name one
//! image.

/// `redis` → `docker.io/library/redis:latest`; `busybox:1.35` →
/// `docker.io/library/busybox:1.35`; a reference with a registry host
/// (a first component holding `.` or `:`, or `localhost`) keeps it.
pub fn normalise(reference: &str) -> String {
    let (name, suffix) = match reference.split_once('@') {
        Some((name, digest)) => (name, format!("@{digest}")),
        None => match reference.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, format!(":{tag}")),
            _ => (reference, ":latest".to_owned()),
        },
    };
    let name = match name.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => name.to_owned(),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    format!("{name}{suffix}")
}

/// A normalised reference without its tag or digest: the name an
/// `imageID` starts with.
pub fn without_tag(reference: &str) -> &str {
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    match name.rsplit_once(':') {
        Some((rest, tag)) if !tag.contains('/') => rest,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::{normalise, without_tag};

    #[test]
    fn short_names_get_docker_hub_and_latest() {
        assert_eq!(normalise("redis"), "docker.io/library/redis:latest");
        assert_eq!(normalise("busybox:1.35"), "docker.io/library/busybox:1.35");
        assert_eq!(normalise("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            normalise("docker.io/library/redis:latest"),
            "docker.io/library/redis:latest"
        );
    }

    #[test]
    fn registry_hosts_and_digests_are_kept() {
        assert_eq!(normalise("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalise("quay.io/a/b:1"), "quay.io/a/b:1");
        assert_eq!(
            normalise("redis@sha256:abcd"),
            "docker.io/library/redis@sha256:abcd"
        );
    }

    #[test]
    fn an_image_id_name_has_no_tag() {
        assert_eq!(
            without_tag("docker.io/library/redis:latest"),
            "docker.io/library/redis"
        );
        assert_eq!(without_tag("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(without_tag("quay.io/a/b@sha256:ab"), "quay.io/a/b");
    }
}
