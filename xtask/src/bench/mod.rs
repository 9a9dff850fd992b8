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
//! `dns_ingress` (cluster DNS against dnsmasq and the Ingress against
//! nginx, on a cluster with skiff-control), `watch_fanout` (one change
//! to thousands of simulated agents' etcd watches), `results`, `report`,
//! `plot` (the output).

mod catalog;
mod control_plane;
mod datapath;
mod dns_ingress;
mod etcd_bulk;
mod ha;
mod kube_api;
mod kube_hash;
mod kube_proxy;
mod leader;
mod load;
mod machine;
mod metrics;
mod nftables;
mod packet_cost;
mod plan;
mod plot;
mod pod_start;
mod progress;
mod report;
mod results;
mod rig;
mod rules;
mod snapshot;
mod sweep;
mod watch_fanout;
mod xdp_ceiling;

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use skiff_tests::{Prefix, teardown_prefix};

use self::{
    catalog::{
        Plane, Svc, datapath_services, etcd_objects, xdp_remote_sink_service, xdp_sink_service,
    },
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
    /// Only these parts (comma-separated or repeated); writes under
    /// target/bench/ and leaves docs/BENCHMARKS.md alone.
    #[arg(long, value_delimiter = ',', value_name = "PART")]
    pub only: Vec<Part>,
}

/// The parts of the benchmark, in the order a run measures them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// ClusterIP and NodePort figures against kube-proxy.
    Datapath,
    /// The scale sweep.
    Scale,
    /// Idle memory of etcd and skiff-control.
    ControlPlane,
    /// What a packet to no Service costs the uplink's tc and XDP programs.
    PacketCost,
    /// Pod start latency.
    PodStart,
    /// Cluster DNS against dnsmasq, and a Service's create → resolvable.
    Dns,
    /// The Ingress against nginx.
    Ingress,
    /// One Service change to thousands of simulated agents' etcd watches,
    /// direct and through etcd's grpc-proxy.
    WatchFanout,
    /// Leader kill → controllers acting again.
    Leader,
    /// Snapshot save and restore time against etcdctl.
    Snapshot,
    /// The API's error window while an etcd member or an API server of an
    /// HA control plane is killed.
    Ha,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Datapath => "datapath",
            Part::Scale => "scale",
            Part::ControlPlane => "control-plane",
            Part::PacketCost => "packet-cost",
            Part::PodStart => "pod-start",
            Part::Dns => "dns",
            Part::Ingress => "ingress",
            Part::WatchFanout => "watch-fanout",
            Part::Leader => "leader",
            Part::Snapshot => "snapshot",
            Part::Ha => "ha",
        }
    }
}

const PROGRAMMED_TIMEOUT: Duration = Duration::from_secs(20);

pub fn bench(args: &BenchArgs) -> Result<()> {
    setup::setup()?;
    let release = !args.quick;
    // The watch fan-out alone needs only skiff-etcd, not a release build
    // of the agent and its eBPF.
    if args.only == [Part::WatchFanout] {
        build_cmd::compile_package(release, "skiff-etcd")?;
    } else {
        build_cmd::compile(release)?;
    }
    let profile = if release { "release" } else { "debug" };
    let bin_dir = sh::workspace_root().join("target").join(profile);
    // SAFETY: no other thread exists yet (the runtime starts later), so
    // nothing reads the environment concurrently.
    unsafe { std::env::set_var("SKIFF_BIN_DIR", &bin_dir) };
    let parts: Vec<Part> = if args.only.is_empty() {
        Part::value_variants().to_vec()
    } else {
        args.only.clone()
    };
    let needs_rig = [
        Part::Datapath,
        Part::Scale,
        Part::ControlPlane,
        Part::PacketCost,
    ]
    .iter()
    .any(|part| parts.contains(part));
    // Before the cluster: a failing fetch or build stops the run at once.
    let kube_proxy = needs_rig.then(kube_proxy::binary).transpose()?;
    let built = kube_proxy
        .map(|kube_proxy| -> Result<Built> {
            Ok(Built {
                kube_proxy,
                drop_object: build_cmd::ebpf_objects_dir(release)?.join("skiff-xdp-drop"),
            })
        })
        .transpose()?;

    let results = run(args.quick, profile, built, &parts)?;
    let outputs = write_outputs(&results, !args.only.is_empty())?;
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

/// What the runs on the bench's own cluster need built besides skiff.
struct Built {
    /// The real kube-proxy.
    kube_proxy: PathBuf,
    /// The XDP_DROP ceiling's program.
    drop_object: PathBuf,
}

fn run(
    quick: bool,
    profile: &'static str,
    built: Option<Built>,
    parts: &[Part],
) -> Result<Results> {
    let plan = Plan::new(quick);
    let progress = Progress::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tear_down_on_interrupt(&runtime);
    let mut results = Results {
        command: format!("cargo xtask bench{}", arguments(quick, parts)),
        quick,
        profile,
        machine: machine::describe(built.as_ref().map(|built| built.kube_proxy.as_path())),
        figures: Vec::new(),
        scale: Vec::new(),
        no_service_connects: None,
        parts: parts.iter().map(|part| part.name()).collect(),
        control_plane: None,
        packet_cost: None,
        pod_start: None,
        leader_failover: None,
        snapshot: None,
        ha: None,
        dns: Vec::new(),
        dns_propagation: None,
        ingress: Vec::new(),
        watch_fanout: None,
        notes: notes(quick, parts),
    };
    if let Some(built) = built {
        run_datapath(&mut results, &plan, &runtime, &progress, built, parts)?;
    }
    if parts.contains(&Part::PodStart) {
        progress.step(format_args!(
            "pod start latency: {} pods, then the process runner baseline",
            plan.pod_starts
        ));
        results.pod_start = Some(pod_start::measure(plan.pod_starts));
    }
    if parts.contains(&Part::Leader) {
        progress.step(format_args!(
            "leader kill → controllers acting: {} rounds",
            plan.leader_kills
        ));
        results.leader_failover = Some(leader::measure(plan.leader_kills));
    }
    if parts.contains(&Part::Ha) {
        progress.step("API error window: an etcd leader, then an API server of three killed");
        let state_dir = sh::workspace_root()
            .join("target/bench")
            .join(format!("ha-{}", std::process::id()));
        results.ha = Some(ha::measure(&state_dir));
        let _ = fs::remove_dir_all(&state_dir);
    }
    let (dns, ingress) = (parts.contains(&Part::Dns), parts.contains(&Part::Ingress));
    if dns || ingress {
        let state_dir = sh::workspace_root()
            .join("target/bench")
            .join(format!("dns-ingress-{}", std::process::id()));
        let measured = dns_ingress::run(&runtime, &plan, &state_dir, (dns, ingress), &progress)?;
        results.dns = measured.dns;
        results.dns_propagation = measured.dns_propagation;
        results.ingress = measured.ingress;
    }
    if parts.contains(&Part::WatchFanout) {
        results.watch_fanout = Some(watch_fanout::measure(&plan, &progress));
    }
    if parts.contains(&Part::Snapshot) {
        progress.step(format_args!(
            "snapshot save and restore at {} Services, {} rounds, against etcdctl",
            plan.snapshot_services, plan.snapshot_rounds
        ));
        let dir = sh::workspace_root()
            .join("target/bench")
            .join(format!("snapshot-{}", std::process::id()));
        results.snapshot = Some(snapshot::measure(
            plan.snapshot_services,
            plan.snapshot_rounds,
            &dir,
        ));
    }
    Ok(results)
}

/// What followed `cargo xtask bench` on the command line.
fn arguments(quick: bool, parts: &[Part]) -> String {
    let mut text = String::new();
    if quick {
        text.push_str(" --quick");
    }
    if parts.len() < Part::value_variants().len() {
        let names: Vec<&str> = parts.iter().map(|part| part.name()).collect();
        text.push_str(&format!(" --only {}", names.join(",")));
    }
    text
}

/// The parts measured on the datapath cluster: its figures, the scale
/// sweep and the control plane's memory.
fn run_datapath(
    results: &mut Results,
    plan: &Plan,
    runtime: &tokio::runtime::Runtime,
    progress: &Progress,
    built: Built,
    parts: &[Part],
) -> Result<()> {
    let prefix = Prefix::random();
    remove_on_interrupt(&prefix);
    let state_dir = sh::workspace_root()
        .join("target/bench")
        .join(prefix.as_str());
    progress.step(format_args!(
        "starting a 2-node cluster {prefix} with etcd and an agent per node (logs in {})",
        state_dir.display()
    ));
    let mut rig = Rig::start(prefix, &state_dir, plan.sync_timeout)?;
    let bulk = EtcdBulk::connect(&rig.etcd_endpoint)?;

    let backends = rig.backend_endpoints();
    let [sink_1, sink_2] = rig.sink_endpoints();
    let for_plane = |plane| datapath_services(plane, &backends[..2], backends[0], sink_1);
    let mut skiff: Vec<Svc> = for_plane(Plane::Skiff);
    skiff.push(xdp_sink_service(sink_2));
    skiff.push(xdp_remote_sink_service(sink_1));
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
    if parts.contains(&Part::ControlPlane) {
        results.control_plane = Some(control_plane::measure(rig.etcd_pid()));
    }
    if parts.contains(&Part::PacketCost) {
        progress.step("no-Service packet cost: bpf run-time statistics of node2's uplink programs");
        results.packet_cost = Some(packet_cost::measure(&rig, plan, progress));
    }
    if parts.contains(&Part::Datapath) || parts.contains(&Part::Scale) {
        progress.step("starting the kube-proxy plane's etcd and skiff-control");
        let kube = KubeProxyPlane {
            binary: built.kube_proxy,
            api: KubeApi::start(runtime, rig.cgroup_dir(), &state_dir)?,
            cgroup: rig.cgroup_dir().join("kube-proxy"),
        };
        let mut rules = NodeRules::new(rig.node(1).clone(), state_dir.clone(), kube)?;
        if parts.contains(&Part::Datapath) {
            progress.step("datapath figures: variants alternate within every round");
            results.figures = datapath::run(
                &mut rig,
                plan,
                &baselines,
                &mut rules,
                &built.drop_object,
                progress,
            );
            rig.check_servers()?;
        }
        if parts.contains(&Part::Scale) {
            progress.step(format_args!("scale sweep: N = {:?}", plan.scales));
            let sweep = sweep::run(&mut rig, plan, &bulk, &mut rules, progress);
            results.scale = sweep.points;
            results.no_service_connects = sweep.no_service;
        }
        drop(rules);
    }

    progress.step("tearing the cluster down");
    drop(rig);
    // etcd's data can be large after 100 000 Services; the logs stay.
    let _ = fs::remove_dir_all(state_dir.join("etcd"));
    let _ = fs::remove_dir_all(state_dir.join("kube-etcd"));
    Ok(())
}

/// Until the agents have programmed the datapath Services: node 1 serves
/// `rpc`, node 2 the XDP sink.
fn wait_programmed(rig: &Rig) -> Result<()> {
    let deadline = Instant::now() + PROGRAMMED_TIMEOUT;
    for (node, service) in [
        (1, "service=\"rpc\""),
        (2, "service=\"sink-xdp\""),
        (2, "service=\"sink-xdp-remote\""),
    ] {
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

/// The cluster an interrupt must remove: the one up at the time.
static CLUSTER_UP: std::sync::Mutex<Option<Prefix>> = std::sync::Mutex::new(None);

/// From now on an interrupt removes the cluster named `prefix`.
fn remove_on_interrupt(prefix: &Prefix) {
    *CLUSTER_UP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(prefix.clone());
}

/// Ctrl-C or SIGTERM: the process would die without unwinding, so no
/// `Drop` would remove the cluster. Tear down the one up by its prefix
/// (which also kills etcd, in the cluster's cgroup) and exit.
fn tear_down_on_interrupt(runtime: &tokio::runtime::Runtime) {
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        let prefix = CLUSTER_UP
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(prefix) = prefix {
            eprintln!("bench: interrupted; removing cluster {prefix}");
            if let Err(error) = teardown_prefix(prefix.as_str()) {
                eprintln!("bench: teardown: {error}");
            }
        }
        std::process::exit(130);
    });
}

fn notes(quick: bool, parts: &[Part]) -> Vec<String> {
    let mut notes = Vec::new();
    if parts.contains(&Part::Datapath) || parts.contains(&Part::Scale) {
        notes.extend(datapath_notes());
    }
    if parts.contains(&Part::Dns) {
        notes.push(
            "DNS: a second cluster (2 nodes, etcd, an agent per node, skiff-control). The Services are created \
             through the API with ClusterIPs the bench chooses, without selectors; the headless Service's \
             EndpointSlice lists the two backend pods. dnsmasq (Debian's dnsmasq-base) runs in node1's netns on \
             node1's address, port 1053, with `--no-resolv --no-hosts --local=/cluster.local/` and the same \
             records in an addn-hosts file: it knows no upstream and forwards nothing. The client pod on node1 \
             runs `skiff-load dns` (hickory-proto messages, A queries over UDP, 2 sockets, 64 queries in \
             flight, cycling through every name, absolute); skiff is reached at the kube-dns ClusterIP \
             10.96.0.10:53, as pods reach it, dnsmasq at its address. A round fails if any answer lacks the \
             address or any query is lost."
                .to_owned(),
        );
        notes.push(
            "Service create → usable: for each timed Service its EndpointSlice (one backend pod) is created \
             first; a probe in the client pod (`skiff-load propagation`) starts its clock as the bench sends \
             the Service's POST, then alternately queries kube-dns for the name and connects to the ClusterIP \
             until the name resolves to it and a connection is accepted. The scale sweep's change→map p99 is \
             the agent's own share of the second figure (etcd event to map write)."
                .to_owned(),
        );
    }
    if parts.contains(&Part::Ingress) {
        notes.push(
            "Ingress: one host, Prefix `/`, to the Service `web` whose EndpointSlice lists two backend pods on \
             node2, each running one nginx worker that answers a 3-byte body. skiff's agent serves the Ingress \
             on node1's address, port 80; the baseline is Debian's nginx in node1's netns on port 8080, \
             configured as ingress-nginx renders the rule (upstream of the endpoints with a keep-alive pool, \
             HTTP/1.1 upstream, X-Forwarded-For and X-Forwarded-Proto, 404 for other hosts, one worker per \
             CPU). wrk (Debian) runs in the outside client's netns with 2 threads and 64 keep-alive \
             connections; a round with any socket error or non-2xx answer fails."
                .to_owned(),
        );
    }
    if parts.contains(&Part::WatchFanout) {
        notes.push(watch_fanout::NOTE.to_owned());
    }
    if quick {
        notes.push(
            "Quick run: 1-second figures, N ≤ 1000, a debug build, likely on a busy machine. It shows that \
             every figure is produced, not what the figures are."
                .to_owned(),
        );
    }
    notes
}

fn datapath_notes() -> [String; 6] {
    [
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
         --xdp=native when the agent has that flag, and redirects the packets into the sink's veth (the sink pods hold a \
         process throughout, as real pods do, so the agent has mapped them). `skiff-xdp-remote`: the same blast at node2 to a \
         NodePort whose backend is the sink on node1, which node2 rewrites and transmits back out of its uplink (XDP_TX). \
         The ceiling (`xdp-drop-ceiling`): the same blast at node1, \
         whose agent runs without XDP, with an XDP program that drops every packet (`skiff-xdp-drop`, built \
         with the agent's programs, never loaded by it) attached in native mode to node1's uplink for its \
         rounds only, counted by the uplink's receive counter: what reaches XDP at all on such a link."
            .to_owned(),
        "Scale sweep: node2's agent is stopped so it does not compete for CPU; node1's agent is restarted \
         with its pins removed at each N, so its full sync programs everything into empty maps; likewise \
         kube-proxy is started afresh on an empty ruleset at each N (its API also holds the 3 datapath \
         Services, which it programs too). The baselines' first sync may take 400 s in a full run (kube-proxy \
         1.20 needs about 190 s at N=10000 here); a baseline is skipped at an N its time at a smaller N, \
         scaled linearly, predicts over that."
            .to_owned(),
        "Connects to no Service: at the sweep's largest N, the client pod connects to a backend pod's own \
         address. With skiff, node1's agent runs with every Service programmed and its programs hooked, and \
         a round after its start begins once it takes at most 5 % of a CPU over half a second; pristine, the agent is stopped and its pins removed, and the round starts only once bpftool shows \
         none of skiff's programs on node1's cgroup or interfaces (the connections still pass node2's \
         pinned programs, in both variants). The two alternate which goes first, round by round, and the \
         ratio is the median of the rounds' ratios."
            .to_owned(),
    ]
}

/// Full runs: bench/results/<date>.json, docs/BENCHMARKS.md, docs/bench/*.svg.
/// Quick runs and runs of some parts (`--only`): the same layout under
/// target/bench/.
fn write_outputs(results: &Results, partial: bool) -> Result<String> {
    let root = sh::workspace_root();
    let base: PathBuf = if results.quick || partial {
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
