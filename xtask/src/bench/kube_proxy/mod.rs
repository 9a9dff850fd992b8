//! The real kube-proxy as the bench's iptables baseline: built once from
//! Debian's source package (`build`), run in node 1's netns (`process`).

mod build;
mod process;

use std::path::Path;

pub use build::binary;
pub use process::{FirstSync, KubeProxy};

use crate::sh;

/// `kube-proxy --version`, for the report.
pub fn version(binary: &Path) -> String {
    sh::probe(sh::cmd(binary).arg("--version"))
        .map(|out| out.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
