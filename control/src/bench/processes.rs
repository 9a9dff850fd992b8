//! The processes measured: a throwaway etcd and a skiff-control on free
//! loopback ports, in a temporary directory, killed and removed on drop.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long start-up may take (etcd, then PKI and the first etcd writes).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Processes {
    etcd: Child,
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
        let (client, peer, api) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let etcd = Command::new(etcd_bin)
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bench={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log(&dir, "etcd.log")?)
            .stderr(log(&dir, "etcd.log")?)
            .spawn()
            .with_context(|| format!("starting {}", etcd_bin.display()))?;
        let token = "bench-token".to_owned();
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, format!("{token},bench,1,\"bench\"\n"))?;
        let addr = format!("127.0.0.1:{api}");
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
        Ok((rss_mib(self.control.id())?, rss_mib(self.etcd.id())?))
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in [&mut self.control, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
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

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
