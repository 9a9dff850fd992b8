//! This node's addresses, read from its uplink when not given.
use std::{
    ffi::CStr,
    io,
    net::{Ipv4Addr, Ipv6Addr},
};

/// The first IPv4 address of `interface`.
pub fn ipv4_of(interface: &str) -> io::Result<Ipv4Addr> {
    first_address(interface, |address| match address {
        Address::V4(ip) => Some(ip),
        Address::V6(_) => None,
    })?
    .ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{interface} has no IPv4 address (or does not exist)"),
        )
    })
}

/// The first global IPv6 address of `interface`, if it has one (an
/// IPv4-only node has none; link-local addresses are never a NodePort's).
pub fn ipv6_of(interface: &str) -> io::Result<Option<Ipv6Addr>> {
    first_address(interface, |address| match address {
        Address::V6(ip) if !ip.is_unicast_link_local() && !ip.is_loopback() => Some(ip),
        _ => None,
    })
}

enum Address {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// The first address of `interface` that `pick` takes.
fn first_address<T>(interface: &str, pick: impl Fn(Address) -> Option<T>) -> io::Result<Option<T>> {
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
        let address = match i32::from(unsafe { (*current.ifa_addr).sa_family }) {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let address = unsafe { &*(current.ifa_addr as *const libc::sockaddr_in) };
                Address::V4(Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let address = unsafe { &*(current.ifa_addr as *const libc::sockaddr_in6) };
                Address::V6(Ipv6Addr::from(address.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        found = pick(address);
        if found.is_some() {
            break;
        }
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(addresses) };
    Ok(found)
}
