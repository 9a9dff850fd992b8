//! skiff's datapath: cgroup `sock_addr` programs that rewrite a connect or
//! send to a service frontend into one to a backend, before any packet
//! exists (`sock_lb`), per-packet NAT on the node's uplink for traffic
//! from outside the node (`tc_nat`, with `xdp_nat` as its fast path), and
//! a `sock_ops` program reporting how connects to backends end (`outlier`,
//! passive health).
#![no_std]
#![no_main]

// The programs: each file holds its entry points and the glue of its hook
// (`reject` is the TCX ingress program's ICMP answer).
mod outlier;
mod reject;
mod sock_lb;
mod sock_reset;
mod tc_nat;
mod xdp_nat;

// What the programs share, one concern each.
mod conntrack;
mod counters;
mod family;
mod fib;
mod flow;
mod header;
mod maps;
mod nat;
mod packet;
mod runtime;
mod select;
