//! `cargo xtask up`, `down`, `exec`: a local skiff cluster in network
//! namespaces, built on the skiff-tests harness (issue #2).

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args)]
pub struct UpArgs {
    /// Number of nodes, each a network namespace running its own skiff-agent.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub nodes: u16,
}

#[derive(Args)]
pub struct ExecArgs {
    /// The pod to run in, by name.
    pub pod: String,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn up(args: &UpArgs) -> Result<()> {
    bail!("up --nodes {}: not implemented yet (issue #2)", args.nodes)
}

pub fn down() -> Result<()> {
    bail!("down: not implemented yet (issue #2)")
}

pub fn exec(args: &ExecArgs) -> Result<()> {
    bail!(
        "exec {} -- {}: not implemented yet (issue #2)",
        args.pod,
        args.command.join(" ")
    )
}
