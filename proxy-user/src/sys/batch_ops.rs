//! `BPF_MAP_UPDATE_BATCH` as a raw `bpf(2)` call: aya 0.14 writes one
//! entry per syscall, and a full sync of 100 000 Services is most of a
//! million entries.
use std::os::fd::{AsRawFd, BorrowedFd};

use aya::{Pod, maps::MapError, sys::SyscallError};

use super::link_ops::bpf;

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// `union bpf_attr` as read by the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `keys[i] -> values[i]` into the map `map`, in order. After an
/// error any prefix of the entries may be written (the kernel reports how
/// many only when it supports the command for the map): the caller writes
/// them again one by one.
pub fn update<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), MapError> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: u32::try_from(keys.len()).expect("a batch fits in u32"),
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    bpf(BPF_MAP_UPDATE_BATCH, &mut attr)
        .map(|_| ())
        .map_err(|io_error| {
            MapError::SyscallError(SyscallError {
                call: "bpf_map_update_batch",
                io_error,
            })
        })
}
