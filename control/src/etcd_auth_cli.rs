//! `skiff-control etcd enable-auth`: turns on etcd's authentication for an
//! etcd that asks for client certificates, with the users the PKI's etcd
//! client certificates name (`skiff_etcd::auth`): `root` for the API
//! server, the read-mostly `skiff-agent` for node agents. Run as `root`
//! (the API server's etcd client certificate); idempotent.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use skiff_etcd::kv::Kv;

use crate::etcd_flags::EtcdFlags;

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Creates users `root` and `skiff-agent` and their roles, then turns
    /// authentication on (again: changes nothing).
    EnableAuth(EnableAuthArgs),
}

#[derive(Debug, Args)]
pub struct EnableAuthArgs {
    #[command(flatten)]
    etcd: EtcdFlags,
}

/// Runs `skiff-control etcd ...`.
pub async fn run(command: EtcdCommand) -> Result<()> {
    match command {
        EtcdCommand::EnableAuth(args) => enable_auth(args).await,
    }
}

async fn enable_auth(args: EnableAuthArgs) -> Result<()> {
    let Some(tls) = args.etcd.tls() else {
        bail!(
            "--etcd-cafile, --etcd-certfile and --etcd-keyfile are required: etcd takes the user \
             from the client certificate"
        );
    };
    let kv = Kv::connect_with(&args.etcd.etcd, Some(&tls))
        .await
        .context("connecting to etcd")?;
    skiff_etcd::auth::enable(&kv)
        .await
        .context("enabling etcd authentication")?;
    println!("etcd authentication enabled");
    Ok(())
}
