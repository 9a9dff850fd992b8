//! `skiff-etcd watch-fanout` against a real etcd: every simulated agent
//! lists and watches, every timed change reaches every one of them, and
//! the summary says so. (How fast is the benchmark's business.)

use std::process::Command;

use serde_json::Value;
use skiff_etcd::launcher::TempEtcd;

#[test]
fn every_change_reaches_every_watcher_of_every_process() {
    let etcd = TempEtcd::start(&[]).expect("start etcd (cargo xtask setup installs it)");
    let endpoint = etcd.local_endpoint();
    let output = Command::new(env!("CARGO_BIN_EXE_skiff-etcd"))
        .arg("watch-fanout")
        .args(["--watch-endpoint", &endpoint])
        .args(["--write-endpoint", &endpoint])
        .args(["--watchers", "13", "--processes", "3", "--changes", "4"])
        .args(["--gap-ms", "10", "--timeout-s", "60"])
        .output()
        .expect("run skiff-etcd watch-fanout");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["phase"], "watching");
    assert_eq!(lines[0]["watchers"], 13);
    let summary = &lines[1];
    assert_eq!(
        (
            &summary["watchers"],
            &summary["processes"],
            &summary["changes"]
        ),
        (&Value::from(13), &Value::from(3), &Value::from(4)),
        "{summary}"
    );
    assert_eq!(summary["relists"], 0, "{summary}");
    let ms = |field: &str| summary[field].as_f64().expect(field);
    // The last watcher's delay bounds every other watcher's.
    assert!(ms("arrival_p50_ms") <= ms("arrival_p99_ms"), "{summary}");
    assert!(
        ms("arrival_p99_ms") <= ms("all_arrived_p99_ms"),
        "{summary}"
    );
    assert!(ms("write_p50_ms") > 0.0, "{summary}");
}
