//! The iterator operations skiff needs as raw `bpf(2)` calls: aya 0.14
//! creates an iterator only by consuming its link, and skiff runs one link
//! many times, each time in another network namespace.
use std::{
    fs::File,
    io::{self, Read as _},
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use super::link_ops::bpf;

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_attr` as read by BPF_LINK_CREATE.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// `union bpf_attr` as read by BPF_ITER_CREATE.
#[repr(C)]
struct IterCreateAttr {
    link_fd: u32,
    flags: u32,
}

/// Reads smaller than the kernel's 8-page iterator buffer: the kernel then
/// stops between two sockets, never re-running the program on one whose
/// output overflowed (it would have been reset already).
const READ_SIZE: usize = 4096;

/// A link for the iterator program `program`.
pub fn link(program: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: 0,
        attach_type: BPF_TRACE_ITER,
        flags: 0,
    };
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: BPF_LINK_CREATE returned a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Runs the iterator of `link` over the calling thread's network namespace
/// and returns all it wrote.
pub fn run(link: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut attr = IterCreateAttr {
        link_fd: link.as_raw_fd() as u32,
        flags: 0,
    };
    let fd = bpf(BPF_ITER_CREATE, &mut attr)?;
    // SAFETY: BPF_ITER_CREATE returned a new file descriptor that we now own.
    let mut iterator = unsafe { File::from_raw_fd(fd as i32) };
    let mut output = Vec::new();
    let mut buffer = [0u8; READ_SIZE];
    loop {
        match iterator.read(&mut buffer) {
            Ok(0) => return Ok(output),
            Ok(n) => output.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}
