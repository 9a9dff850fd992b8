//! Writing many objects to etcd fast, through `skiff-etcd put` (batched
//! transactions, several in flight). xtask itself has no etcd client: it
//! must build on a machine without `protoc`.

use std::{
    io::{BufRead, BufReader, BufWriter, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::Mutex,
};

use anyhow::{Context, Result, bail};

pub struct EtcdBulk {
    pipe: Mutex<Pipe>,
}

struct Pipe {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
}

impl EtcdBulk {
    pub fn connect(endpoint: &str) -> Result<Self> {
        let binary = skiff_tests::etcd_tool_binary()?;
        let mut child = Command::new(&binary)
            .args(["put", "--endpoint", endpoint])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let to = BufWriter::new(child.stdin.take().expect("stdin is piped"));
        let from = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Self {
            pipe: Mutex::new(Pipe { child, to, from }),
        })
    }

    /// Puts every (key, value); returns how many.
    pub fn put_all(&self, objects: impl IntoIterator<Item = (String, String)>) -> Result<usize> {
        let mut pipe = self.pipe.lock().expect("no writer panicked");
        for (key, value) in objects {
            serde_json::to_writer(&mut pipe.to, &(key, value))?;
            pipe.to.write_all(b"\n")?;
        }
        pipe.to.write_all(b"\n")?;
        pipe.to.flush().context("writing to skiff-etcd put")?;
        let mut answer = String::new();
        pipe.from
            .read_line(&mut answer)
            .context("reading from skiff-etcd put")?;
        match answer.trim().strip_prefix("ok ") {
            Some(count) => count.parse().context("skiff-etcd put's count"),
            None => bail!("skiff-etcd put failed (its error is above)"),
        }
    }

    pub fn put(&self, key: String, value: String) -> Result<()> {
        self.put_all([(key, value)]).map(drop)
    }
}

impl Drop for EtcdBulk {
    fn drop(&mut self) {
        let pipe = self.pipe.get_mut().expect("no writer panicked");
        let _ = pipe.child.kill();
        let _ = pipe.child.wait();
    }
}
