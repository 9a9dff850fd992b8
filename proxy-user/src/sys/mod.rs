//! Raw `bpf(2)` operations aya 0.14 does not offer: link pinning and
//! program swaps, batched map writes, iterators run in place, and the
//! kfunc relocations of an eBPF object.
pub mod batch_ops;
pub mod iter_ops;
pub mod kfunc;
pub mod link_ops;
