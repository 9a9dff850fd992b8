//! The processes measured: a throwaway etcd and a skiff-control on free
//! loopback ports, in a temporary directory, killed and removed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use skiff_etcd::launcher::{EtcdConfig, EtcdProcess, free_port};

/// How long start-up may take (etcd, then PKI and the first etcd writes).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Processes {
    etcd: EtcdProcess,
    control: Child,
    pub dir: PathBuf,
    /// `127.0.0.1:<port>` skiff-control serves on.
    pub addr: String,
    pub token: String,
}

impl Processes {
    pub fn start(etcd_bin: &Path, control_bin: &Path) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("skiff-control-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let etcd = EtcdConfig::on_free_ports(dir.join("etcd-data"), &[])
            .and_then(|config| EtcdProcess::start(etcd_bin, config, &dir.join("etcd.log")))
            .with_context(|| format!("starting {}", etcd_bin.display()))?;
        let etcd_url = etcd.config().local_endpoint();
        let token = "bench-token".to_owned();
        let tokens = dir.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{token},bench,1,\"bench,system:masters\"\n"),
        )?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let control = Command::new(control_bin)
            .args(["--etcd", &etcd_url, "--bind", &addr])
            .arg("--data-dir")
            .arg(dir.join("control"))
            .arg("--token-file")
            .arg(&tokens)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log(&dir, "skiff-control.log")?)
            .stderr(log(&dir, "skiff-control.log")?)
            .spawn()
            .with_context(|| format!("starting {}", control_bin.display()))?;
        let processes = Self {
            etcd,
            control,
            dir,
            addr,
            token,
        };
        processes.wait_until_serving()?;
        Ok(processes)
    }

    /// skiff-control writes its kubeconfig once it serves.
    fn wait_until_serving(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.dir.join("control/admin.kubeconfig").exists() {
            if Instant::now() > deadline {
                bail!(
                    "skiff-control did not start; see {}",
                    self.dir.join("skiff-control.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    pub fn ca_pem(&self) -> Result<Vec<u8>> {
        let path = self.dir.join("control/pki/ca.crt");
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Resident memory of (skiff-control, etcd), in MiB.
    pub fn rss_mib(&self) -> Result<(f64, f64)> {
        Ok((rss_mib(self.control.id())?, rss_mib(self.etcd.pid())?))
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let _ = self.control.kill();
        let _ = self.control.wait();
        self.etcd.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn log(dir: &Path, name: &str) -> Result<File> {
    let path = dir.join(name);
    File::options()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// `VmRSS` of a process.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}
