//! The name prefix that marks everything one cluster creates.
//!
//! Two shapes exist: `skiff` for the long-lived `cargo xtask up` cluster and
//! `skiff-<4 hex>` for a test run. Given any name, [`Prefix::owner_of`] tells
//! which prefix it belongs to, so `teardown_prefix("skiff")` never takes a
//! test run's `skiff-1a2b-node1` for one of its own.

use std::fmt;

use crate::error::{HarnessError, Result};

const BASE: &str = "skiff";
const RUN_ID_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// A fresh `skiff-<4 hex>` prefix for one test run.
    pub fn random() -> Prefix {
        Prefix(format!("{BASE}-{:04x}", rand::random::<u16>()))
    }

    /// `skiff`: the prefix of the cluster that `cargo xtask up` leaves running.
    pub fn fixed() -> Prefix {
        Prefix(BASE.to_owned())
    }

    /// Accepts exactly the two shapes above; anything else could match names
    /// that skiff did not create, so teardown refuses it.
    pub fn parse(s: &str) -> Result<Prefix> {
        if s == BASE || is_run_prefix(s) {
            Ok(Prefix(s.to_owned()))
        } else {
            Err(HarnessError::InvalidPrefix(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a test run's prefix, false for the fixed `skiff`.
    pub fn is_random(&self) -> bool {
        self.0 != BASE
    }

    /// The prefix that created `name` (a netns, link, cgroup or pin directory
    /// name), or `None` if skiff did not.
    pub fn owner_of(name: &str) -> Option<Prefix> {
        if let Some(run) = name.get(..BASE.len() + 1 + RUN_ID_LEN) {
            let rest = &name[run.len()..];
            if is_run_prefix(run) && (rest.is_empty() || rest.starts_with('-')) {
                return Some(Prefix(run.to_owned()));
            }
        }
        (name == BASE || name.starts_with("skiff-")).then(Prefix::fixed)
    }

    /// Whether `name` was created by a cluster with this prefix.
    pub fn owns(&self, name: &str) -> bool {
        Prefix::owner_of(name).as_ref() == Some(self)
    }

    /// `<prefix>-<suffix>`: how every netns and root-side link is named.
    pub fn join(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.0)
    }
}

fn is_run_prefix(s: &str) -> bool {
    s.strip_prefix("skiff-").is_some_and(|id| {
        id.len() == RUN_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_prefixes_parse_and_are_random() {
        let p = Prefix::random();
        assert!(p.is_random());
        assert_eq!(Prefix::parse(p.as_str()).unwrap(), p);
        assert!(
            p.as_str().len() + "-cp".len() <= 15,
            "root link names must fit IFNAMSIZ"
        );
    }

    #[test]
    fn parse_rejects_other_shapes() {
        for bad in [
            "",
            "skif",
            "skiff-",
            "skiff-ABCD",
            "skiff-abc",
            "skiff-abcde",
            "skiff-node1",
            "other",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn owner_tells_fixed_and_run_names_apart() {
        let fixed = Prefix::fixed();
        let run = Prefix::parse("skiff-1a2b").unwrap();
        for name in [
            "skiff",
            "skiff-cp",
            "skiff-node1",
            "skiff-node1-web",
            "skiff-fabric",
        ] {
            assert!(fixed.owns(name), "{name}");
            assert!(!run.owns(name), "{name}");
        }
        for name in ["skiff-1a2b", "skiff-1a2b-cp", "skiff-1a2b-node2-db"] {
            assert!(run.owns(name), "{name}");
            assert!(!fixed.owns(name), "{name}");
        }
        assert_eq!(Prefix::owner_of("skiffy"), None);
        assert_eq!(Prefix::owner_of("eth0"), None);
        assert_eq!(Prefix::owner_of("skiff-1a2bc"), Some(Prefix::fixed()));
    }
}
