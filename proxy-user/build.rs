//! Builds the eBPF programs (crate `proxy-ebpf`) for the BPF target with the
//! nightly toolchain and `bpf-linker`, so that the agent binary embeds its
//! own programs and `cargo build` alone yields a working agent.
use anyhow::{Context as _, anyhow};

/// The nightly toolchain `cargo xtask setup` installs for this build.
const EBPF_TOOLCHAIN: &str = include_str!("../proxy-ebpf/toolchain");

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "proxy-ebpf")
        .ok_or_else(|| anyhow!("the proxy-ebpf package is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        // Pinned, so that its LLVM is bpf-linker's (see xtask's setup).
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN.trim()),
    )
}
