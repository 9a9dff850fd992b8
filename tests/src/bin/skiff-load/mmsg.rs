//! sendmmsg(2) / recvmmsg(2) headers: one datagram per header, one buffer
//! each.

/// One header per iovec. The headers point into `iovecs`, which must
/// outlive them and not move.
pub fn headers(iovecs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect()
}
