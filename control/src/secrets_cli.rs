//! `skiff-control secrets re-encrypt`: after a key rotation (a new first
//! key in `--encryption-provider-config`, the API servers restarted with
//! it), rewrites every value of the encrypted resources with that key, so
//! that the old key can then be dropped.

use std::path::PathBuf;
use std::sync::Arc;

use crate::etcd_flags::EtcdFlags;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::api::stored_resources;
use crate::store::encryption::Encryption;
use crate::store::{Reencrypted, Store};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Rewrites every object of the encrypted resources with the first
    /// provider of --encryption-provider-config (one compare-and-swap per
    /// key; safe while API servers run).
    ReEncrypt(ReencryptArgs),
}

#[derive(Debug, Args)]
pub struct ReencryptArgs {
    /// The EncryptionConfiguration the API servers run with.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: PathBuf,
    /// Only this resource (`secrets`, `deployments.apps`); repeat for
    /// several [default: every resource the configuration encrypts].
    #[arg(long = "resource", value_name = "RESOURCE")]
    resources: Vec<String>,
    #[command(flatten)]
    etcd: EtcdFlags,
}

/// Runs `skiff-control secrets ...`.
pub async fn run(command: SecretsCommand) -> Result<()> {
    match command {
        SecretsCommand::ReEncrypt(args) => reencrypt(args).await,
    }
}

async fn reencrypt(args: ReencryptArgs) -> Result<()> {
    let stored = stored_resources();
    let encryption = Encryption::load(&args.encryption_provider_config, &stored)?;
    let mut prefixes: Vec<String> = encryption.prefixes().map(str::to_owned).collect();
    if !args.resources.is_empty() {
        let mut wanted = Vec::new();
        for name in &args.resources {
            let (plural, group) = name.split_once('.').unwrap_or((name, ""));
            let Some(resource) = stored
                .iter()
                .find(|resource| resource.plural == plural && resource.group == group)
            else {
                bail!("--resource {name}: not a resource skiff-control stores");
            };
            let prefix = format!("{}/", resource.storage);
            if !prefixes.contains(&prefix) {
                bail!(
                    "--resource {name}: {} does not encrypt it",
                    args.encryption_provider_config.display()
                );
            }
            wanted.push(prefix);
        }
        prefixes = wanted;
    }
    let tls = args.etcd.tls();
    let store = Store::connect(&args.etcd.etcd, tls.as_ref())
        .await
        .context("connecting to etcd")?
        .encrypted(Arc::new(encryption));
    let (mut rewritten, mut current) = (0, 0);
    for prefix in &prefixes {
        let summary = store
            .reencrypt(prefix, |key, outcome| match outcome {
                Reencrypted::Rewritten => println!("rewrote {key}"),
                Reencrypted::AlreadyCurrent => println!("already current {key}"),
                Reencrypted::Gone => println!("deleted meanwhile {key}"),
            })
            .await
            .with_context(|| format!("re-encrypting {prefix}"))?;
        rewritten += summary.rewritten;
        current += summary.already_current;
    }
    println!("{rewritten} rewritten, {current} already current");
    Ok(())
}
