//! Backup and restore time at 10 000 Services: `skiff-control snapshot
//! save` (etcd's snapshot stream plus the PKI, hash checked, in a tar) and
//! `skiff-control snapshot restore` (the archive unpacked, the hash
//! checked, `etcdctl snapshot restore`), each against etcdctl alone on the
//! same etcd (`etcdctl snapshot save`, `etcdctl snapshot restore`): the
//! baseline is what the archive adds to etcd's own tool. Variants
//! alternate in every round; each time is a whole process run.
//!
//! The etcd holds the scale sweep's Services with their EndpointSlices.
//! The PKI is a copy of a real one's size: four PEM files of 2 KiB (the
//! archive copies bytes; what they hold does not change the time).

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use skiff_tests::{Etcd, control_binary};

use super::{
    catalog::{Endpoint, Plane, etcd_objects, scale_service},
    etcd_bulk::EtcdBulk,
    results::{SnapshotTimes, median},
};

const ETCDCTL: &str = "/usr/bin/etcdctl";
const PEER_URL: &str = "http://127.0.0.1:2380";

pub fn measure(services: usize, rounds: usize, dir: &Path) -> SnapshotTimes {
    let mut times = SnapshotTimes {
        services,
        ..SnapshotTimes::default()
    };
    if let Err(error) = measure_into(&mut times, rounds, dir) {
        times.error = Some(format!("{error:#}"));
    }
    let _ = fs::remove_dir_all(dir);
    times
}

fn measure_into(times: &mut SnapshotTimes, rounds: usize, dir: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    let control_dir = dir.join("control");
    let pki = control_dir.join("pki");
    fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    for name in ["ca.crt", "ca.key", "apiserver.crt", "apiserver.key"] {
        fs::write(pki.join(name), [b'-'; 2048])?;
    }
    let etcd = Etcd::start(&[]).context("starting etcd")?;
    let endpoint = etcd.local_endpoint();
    let backends: Vec<Endpoint> = (0..10)
        .map(|i| Endpoint {
            ip: [10, 244, 1, 10 + i].into(),
            node: 1,
        })
        .collect();
    let bulk = EtcdBulk::connect(&endpoint)?;
    bulk.put_all(
        (0..times.services)
            .map(|index| scale_service(Plane::Skiff, index, &backends))
            .flat_map(|svc| etcd_objects(&svc))
            .map(|(key, value)| (key, value.to_string())),
    )?;
    drop(bulk);

    let control = control_binary()?;
    let archive = dir.join("backup.tar");
    let plain = dir.join("etcdctl.db");
    let (mut save, mut save_baseline) = (Vec::new(), Vec::new());
    let (mut restore, mut restore_baseline) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for path in [&archive, &plain] {
            let _ = fs::remove_file(path);
        }
        save.push(timed(
            Command::new(&control)
                .args(["snapshot", "save"])
                .arg(&archive)
                .args(["--etcd", &endpoint, "--data-dir"])
                .arg(&control_dir),
        )?);
        save_baseline.push(timed(
            etcdctl()
                .args(["--endpoints", &endpoint, "snapshot", "save"])
                .arg(&plain),
        )?);
        let (restored, restored_etcd) = (dir.join("restored"), dir.join("restored-etcd"));
        for path in [&restored, &restored_etcd] {
            let _ = fs::remove_dir_all(path);
        }
        restore.push(timed(
            Command::new(&control)
                .args(["snapshot", "restore"])
                .arg(&archive)
                .arg("--data-dir")
                .arg(&restored)
                .arg("--etcd-data-dir")
                .arg(&restored_etcd),
        )?);
        let _ = fs::remove_dir_all(&restored_etcd);
        restore_baseline.push(timed(
            etcdctl()
                .args(["snapshot", "restore"])
                .arg(&plain)
                .arg("--data-dir")
                .arg(&restored_etcd)
                .args(["--name", "skiff", "--initial-cluster"])
                .arg(format!("skiff={PEER_URL}"))
                .args(["--initial-advertise-peer-urls", PEER_URL]),
        )?);
    }
    times.etcd_mb = Some(fs::metadata(&plain)?.len() as f64 / (1024.0 * 1024.0));
    times.save_ms = median(&save);
    times.save_baseline_ms = median(&save_baseline);
    times.restore_ms = median(&restore);
    times.restore_baseline_ms = median(&restore_baseline);
    Ok(())
}

fn etcdctl() -> Command {
    let mut command = Command::new(ETCDCTL);
    command.env("ETCDCTL_API", "3");
    command
}

/// Runs `command` to success; its wall time in milliseconds.
fn timed(command: &mut Command) -> Result<f64> {
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    let elapsed: Duration = started.elapsed();
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(elapsed.as_secs_f64() * 1000.0)
}
