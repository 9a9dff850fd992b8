//! `cargo xtask images`: the images the examples and tests run, built from
//! Debian packages into OCI archives (`target/skiff-images/` by default).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use skiff_tests::images::build_all;

use crate::sh;

#[derive(Args)]
pub struct ImagesArgs {
    /// Where to write the archives. [default: target/skiff-images]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn images(args: &ImagesArgs) -> Result<()> {
    let mut echo = sh::cargo();
    echo.args([
        "build",
        "--quiet",
        "-p",
        "skiff-tests",
        "--bin",
        "skiff-echo",
    ]);
    sh::run(&mut echo)?;
    build(&args.out.clone().unwrap_or_else(skiff_tests::image_dir))
}

/// Builds every image into `out` (the echo server from the debug build),
/// printing one line per image: reference, digest, and how long it took
/// or that it was up to date.
pub fn build(out: &Path) -> Result<()> {
    let echo = skiff_tests::echo_binary()?;
    let built = build_all(out, &echo).context("images")?;
    for image in built {
        let how = match image.rebuilt {
            true => format!("built in {:.1} s", image.took.as_secs_f64()),
            false => "up to date".to_owned(),
        };
        println!(
            "images: {} {} ({how}) {}",
            image.reference,
            image.digest,
            image.archive.display()
        );
    }
    Ok(())
}
