//! Who a container's process runs as: `runAsUser`/`runAsGroup` if the
//! securityContext says, else the image's `User` (`name`, `uid`,
//! `uid:gid`, `name:group`) looked up in the image's own `/etc/passwd` and
//! `/etc/group`; `runAsNonRoot` refuses uid 0 and a user it cannot tell is
//! not root, as the kubelet does.
use std::{fs, path::Path};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// What the pod asks for, container settings over the pod's.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    pub supplemental_groups: Vec<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in the image's /etc/group")]
    UnknownGroup(String),
    #[error("container has runAsNonRoot and image will run as root")]
    Root,
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({0}), cannot verify user is non-root"
    )]
    NonNumeric(String),
    #[error("invalid id {0}: ids are 0 to 4294967295")]
    Invalid(i64),
}

pub fn resolve(rootfs: &Path, image_user: &str, wanted: &Wanted) -> Result<Identity, UserError> {
    let (user, group) = match image_user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (image_user, None),
    };
    if wanted.run_as_non_root {
        match wanted.run_as_user {
            Some(0) => return Err(UserError::Root),
            Some(_) => {}
            None if user.is_empty() || user == "0" => return Err(UserError::Root),
            None if user.parse::<u32>().is_err() => {
                return Err(UserError::NonNumeric(user.to_owned()));
            }
            None => {}
        }
    }
    let passwd = read_image_file(rootfs, "passwd");
    // Fields of a passwd line: name:password:uid:gid:...
    let entry = |matches: &dyn Fn(&[&str]) -> bool| {
        passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.len() >= 4 && matches(fields))
    };
    let (uid, user_gid) = match wanted.run_as_user {
        Some(uid) => {
            let uid = id(uid)?;
            let gid = entry(&|f| f[2] == uid.to_string()).and_then(|f| f[3].parse().ok());
            (uid, gid)
        }
        None if user.is_empty() => (0, Some(0)),
        None => match user.parse::<u32>() {
            Ok(uid) => {
                let gid = entry(&|f| f[2] == user).and_then(|f| f[3].parse().ok());
                (uid, gid)
            }
            Err(_) => {
                let fields =
                    entry(&|f| f[0] == user).ok_or_else(|| UserError::UnknownUser(user.into()))?;
                let uid = fields[2]
                    .parse()
                    .map_err(|_| UserError::UnknownUser(user.into()))?;
                (uid, fields[3].parse().ok())
            }
        },
    };
    let gid = match (wanted.run_as_group, group) {
        (Some(gid), _) => id(gid)?,
        (None, Some(group)) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => read_image_file(rootfs, "group")
                .lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::UnknownGroup(group.into()))?,
        },
        (None, None) => user_gid.unwrap_or(0),
    };
    let additional_gids = (wanted.supplemental_groups.iter())
        .map(|g| id(*g))
        .collect::<Result<_, _>>()?;
    Ok(Identity {
        uid,
        gid,
        additional_gids,
    })
}

fn id(value: i64) -> Result<u32, UserError> {
    u32::try_from(value).map_err(|_| UserError::Invalid(value))
}

/// `/etc/<name>` of the image, or nothing. A symlink on the way is not
/// followed: it could name a file of the node.
fn read_image_file(rootfs: &Path, name: &str) -> String {
    let etc = rootfs.join("etc");
    let path = etc.join(name);
    let plain = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink());
    if !plain(&etc) || !plain(&path) {
        return String::new();
    }
    fs::read_to_string(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nredis:x:999:998::/var/lib/redis:/bin/false\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\nredis:x:998:\n").unwrap();
        dir
    }

    #[test]
    fn the_image_user_is_looked_up_in_its_passwd_and_group() {
        let root = rootfs();
        let wanted = Wanted::default();
        let found = |user| resolve(root.path(), user, &wanted).map(|i| (i.uid, i.gid));
        assert_eq!(found(""), Ok((0, 0)));
        assert_eq!(found("redis"), Ok((999, 998)));
        assert_eq!(found("999"), Ok((999, 998)));
        assert_eq!(found("1234:5"), Ok((1234, 5)));
        assert_eq!(found("redis:root"), Ok((999, 0)));
        assert_eq!(
            found("nobody"),
            Err(UserError::UnknownUser("nobody".into()))
        );
    }

    #[test]
    fn the_security_context_wins_and_run_as_non_root_refuses_root() {
        let root = rootfs();
        let wanted = Wanted {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            run_as_non_root: true,
            supplemental_groups: vec![4000],
        };
        let identity = resolve(root.path(), "redis", &wanted).unwrap();
        assert_eq!((identity.uid, identity.gid), (1000, 3000));
        assert_eq!(identity.additional_gids, [4000]);
        let non_root = Wanted {
            run_as_non_root: true,
            ..Wanted::default()
        };
        assert_eq!(resolve(root.path(), "", &non_root), Err(UserError::Root));
        assert_eq!(
            resolve(root.path(), "redis", &non_root),
            Err(UserError::NonNumeric("redis".into()))
        );
        assert!(resolve(root.path(), "999", &non_root).is_ok());
    }
}
