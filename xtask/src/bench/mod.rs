//! `cargo xtask bench`, the benchmark: skiff against direct connections, the
//! real kube-proxy in iptables mode and kube-proxy's nftables rules, in one
//! run on the netns cluster; then the scale sweep. Writes the results as
//! JSON, a Markdown report and SVG plots.
//!
//! The parts: `rig` (the cluster), `catalog` (the Services, per variant),
//! `kube_proxy` (building and running the real one), `kube_api` (the API
//! server it reads, written through `api_client`), `nftables`
//! (kube-proxy's nftables rules), `rules` (loading either baseline),
//! `load` (the load generators), `datapath` and `sweep` (the figures),
//! `results`, `report`, `plot` (the output).

mod catalog;
mod control_plane;
mod datapath;
mod etcd_bulk;
mod kube_api;
mod kube_hash;
mod kube_proxy;
mod load;
mod machine;
mod metrics;
mod nftables;
mod plan;
mod plot;
mod pod_start;
mod progress;
mod report;
mod results;
mod rig;
mod rules;
mod sweep;

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use skiff_tests::{Prefix, teardown_prefix};

use self::{
    catalog::{Plane, Svc, datapath_services, etcd_objects, xdp_sink_service},
    datapath::BaselineServices,
    etcd_bulk::EtcdBulk,
    kube_api::KubeApi,
    plan::Plan,
    progress::Progress,
    results::Results,
    rig::Rig,
    rules::{KubeProxyPlane, NodeRules},
};
use crate::{build_cmd, setup, sh};

#[derive(Args)]
pub struct BenchArgs {
    /// A smoke run: every figure, but 1-second measurements, N up to 1000,
    /// a debug build; writes under target/bench/ and leaves
    /// docs/BENCHMARKS.md alone.
    #[arg(long)]
    pub quick: bool,
}

const PROGRAMMED_TIMEOUT: Duration = Duration::from_secs(20);

pub fn bench(args: &BenchArgs) -> Result<()> {
    setup::setup()?;
    let release = !args.quick;
    build_cmd::compile(release)?;
    let profile = if release { "release" } else { "debug" };
    let bin_dir = sh::workspace_root().join("target").join(profile);
    // SAFETY: no other thread exists yet (the runtime starts later), so
    // nothing reads the environment concurrently.
    unsafe { std::env::set_var("SKIFF_BIN_DIR", &bin_dir) };
    // Before the cluster: a failing fetch or build stops the run at once.
    let kube_proxy = kube_proxy::binary()?;

    let results = run(args.quick, profile, kube_proxy)?;
    let outputs = write_outputs(&results)?;
    let missing = results.missing();
    if !missing.is_empty() {
        bail!(
            "bench: {} figure(s) not produced:\n  {}",
            missing.len(),
            missing.join("\n  ")
        );
    }
    println!("bench: every figure produced; {outputs}");
    Ok(())
}

fn run(quick: bool, profile: &'static str, kube_proxy: PathBuf) -> Result<Results> {
    let plan = Plan::new(quick);
    let progress = Progress::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let prefix = Prefix::random();
    tear_down_on_interrupt(&runtime, prefix.clone());
    let state_dir = sh::workspace_root()
        .join("target/bench")
        .join(prefix.as_str());
    progress.step(format_args!(
        "starting a 2-node cluster {prefix} with etcd and an agent per node (logs in {})",
        state_dir.display()
    ));
    let mut rig = Rig::start(prefix, &state_dir, plan.sync_timeout)?;
    let bulk = EtcdBulk::connect(&rig.etcd_endpoint)?;
    let machine = machine::describe(&kube_proxy);

    let backends = rig.backend_endpoints();
    let [sink_1, sink_2] = rig.sink_endpoints();
    let for_plane = |plane| datapath_services(plane, &backends[..2], backends[0], sink_1);
    let mut skiff: Vec<Svc> = for_plane(Plane::Skiff);
    skiff.push(xdp_sink_service(sink_2));
    bulk.put_all(
        skiff
            .iter()
            .flat_map(etcd_objects)
            .map(|(key, value)| (key, value.to_string())),
    )?;
    wait_programmed(&rig)?;
    let baselines = BaselineServices {
        iptables: for_plane(Plane::Iptables),
        nftables: for_plane(Plane::Nftables),
    };
    let control_plane = control_plane::measure(rig.etcd_pid());
    progress.step("starting the kube-proxy plane's etcd and skiff-control");
    let kube = KubeProxyPlane {
        binary: kube_proxy,
        api: KubeApi::start(&runtime, rig.cgroup_dir(), &state_dir)?,
        cgroup: rig.cgroup_dir().join("kube-proxy"),
    };
    let mut rules = NodeRules::new(rig.node(1).clone(), state_dir.clone(), kube)?;

    progress.step("datapath figures: variants alternate within every round");
    let figures = datapath::run(&mut rig, &plan, &baselines, &mut rules, &progress);
    rig.check_servers()?;
    progress.step(format_args!("scale sweep: N = {:?}", plan.scales));
    let scale = sweep::run(&mut rig, &plan, &bulk, &mut rules, &progress);

    progress.step("tearing the cluster down");
    drop(rules);
    drop(rig);
    // etcd's data can be large after 100 000 Services; the logs stay.
    let _ = fs::remove_dir_all(state_dir.join("etcd"));
    let _ = fs::remove_dir_all(state_dir.join("kube-etcd"));
    progress.step(format_args!(
        "pod start latency: {} pods, then the process runner baseline",
        plan.pod_starts
    ));
    let pod_start = pod_start::measure(plan.pod_starts);
    Ok(Results {
        command: format!("cargo xtask bench{}", if quick { " --quick" } else { "" }),
        quick,
        profile,
        machine,
        figures,
        scale,
        control_plane,
        pod_start,
        notes: notes(quick),
    })
}

/// Until the agents have programmed the datapath Services: node 1 serves
/// `rpc`, node 2 the XDP sink.
fn wait_programmed(rig: &Rig) -> Result<()> {
    let deadline = Instant::now() + PROGRAMMED_TIMEOUT;
    for (node, service) in [(1, "service=\"rpc\""), (2, "service=\"sink-xdp\"")] {
        while !rig.metrics(node).is_ok_and(|text| text.contains(service)) {
            if Instant::now() > deadline {
                bail!(
                    "node{node}'s agent did not program the bench's Services in {PROGRAMMED_TIMEOUT:?}"
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM: the process would die without unwinding, so no
/// `Drop` would remove the cluster. Tear it down by its prefix (which also
/// kills etcd, in the cluster's cgroup) and exit.
fn tear_down_on_interrupt(runtime: &tokio::runtime::Runtime, prefix: Prefix) {
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("bench: interrupted; removing cluster {prefix}");
        if let Err(error) = teardown_prefix(prefix.as_str()) {
            eprintln!("bench: teardown: {error}");
        }
        std::process::exit(130);
    });
}

fn notes(quick: bool) -> Vec<String> {
    let mut notes = vec![
        "The iptables baseline (`kube-proxy-iptables`) is the real kube-proxy: Debian bookworm's kubernetes \
         source package (1.20.2) built with golang-1.19-go, run in iptables mode (iptables-nft) in node1's \
         netns only, reading Services and v1 Endpoints created through a skiff-control of its own (on an etcd \
         of its own, so skiff's agents never see them). Its sync times are its own measurement \
         (kubeproxy_sync_proxy_rules_duration_seconds, the first full sync after a start on an empty ruleset). \
         The nftables baseline is generated: the nat rules kube-proxy's nftables mode writes (which the \
         1.20 kube-proxy does not have), with its table, maps and names, loaded with nft -f."
            .to_owned(),
        "The client pod runs on node1 and the backends on node2, so every ClusterIP flow is routed through \
         node1's netfilter hooks, where the baselines' rules sit. While the other variants run, node1's \
         ruleset is empty: no baseline's conntrack or NAT taxes them."
            .to_owned(),
        "Each plane has its own VIPs (skiff 10.96.0.0/14, the agents' --service-cidr; kube-proxy's \
         skiff-control allocates from 10.100.0.0/15; nftables 10.102.0.0/15) and NodePorts, so the agent \
         never translates a baseline's addresses. Node1's tc programs still see the baselines' packets \
         and pass them. kube-proxy keeps its hands off global state: --conntrack-max-per-core=0 and zero \
         conntrack TCP timeouts leave conntrack's sysctls alone."
            .to_owned(),
        "NodePort pps: a sendmmsg blaster in the outside client's netns pinned to CPU 0 (veth delivery runs \
         the whole forwarding path on the sender's CPU, so the send, the bridges and the veths are a fixed \
         cost in every variant and the ratios understate the NAT paths' own difference), a recvmmsg sink \
         pod pinned to CPU 1 counting delivered packets. tc and the baselines are measured on node1; XDP on node2, whose agent runs \
         --xdp=native when the agent has that flag."
            .to_owned(),
        "Scale sweep: node2's agent is stopped so it does not compete for CPU; node1's agent is restarted \
         with its pins removed at each N, so its full sync programs everything into empty maps; likewise \
         kube-proxy is started afresh on an empty ruleset at each N (its API also holds the 3 datapath \
         Services, which it programs too)."
            .to_owned(),
    ];
    if quick {
        notes.push(
            "Quick run: 1-second figures, N ≤ 1000, a debug build, likely on a busy machine. It shows that \
             every figure is produced, not what the figures are."
                .to_owned(),
        );
    }
    notes
}

/// Full runs: bench/results/<date>.json, docs/BENCHMARKS.md, docs/bench/*.svg.
/// Quick runs: the same layout under target/bench/.
fn write_outputs(results: &Results) -> Result<String> {
    let root = sh::workspace_root();
    let base: PathBuf = if results.quick {
        root.join("target/bench")
    } else {
        root.to_owned()
    };
    let results_dir = base.join("bench/results");
    let docs = base.join("docs");
    fs::create_dir_all(&results_dir)
        .and_then(|()| fs::create_dir_all(&docs))
        .context("creating the output directories")?;
    let json = results_dir.join(format!("{}.json", results.machine.date.replace(':', "")));
    fs::write(&json, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let plots = plot::scale_plots(&results.scale, &docs.join("bench"))?
        .into_iter()
        .map(|(title, file)| (title, format!("bench/{file}")))
        .collect::<Vec<_>>();
    let markdown = report::markdown(results, &plots);
    let md = docs.join("BENCHMARKS.md");
    fs::write(&md, &markdown).with_context(|| format!("writing {}", md.display()))?;
    println!("\n{markdown}");
    Ok(format!(
        "results in {}, report in {}",
        relative(root, &json),
        relative(root, &md)
    ))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
