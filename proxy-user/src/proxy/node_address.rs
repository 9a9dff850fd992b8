//! This node's address, read from its uplink when not given.
use std::{ffi::CStr, io, net::Ipv4Addr};

/// The first IPv4 address of `interface`.
pub fn ipv4_of(interface: &str) -> io::Result<Ipv4Addr> {
    let mut addresses: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills the pointer with a list we free below.
    if unsafe { libc::getifaddrs(&mut addresses) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut entry = addresses;
    while !entry.is_null() {
        // SAFETY: a non-null entry of the list getifaddrs returned.
        let current = unsafe { &*entry };
        entry = current.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(current.ifa_name) };
        if name.to_bytes() != interface.as_bytes() || current.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr.
        if i32::from(unsafe { (*current.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let address = unsafe { &*(current.ifa_addr as *const libc::sockaddr_in) };
        found = Some(Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr)));
        break;
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(addresses) };
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{interface} has no IPv4 address (or does not exist)"),
        )
    })
}
