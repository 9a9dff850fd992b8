//! The part of SPDY/3 that kubectl's port-forward needs from a server
//! (`Upgrade: SPDY/3.1`, as moby/spdystream speaks it): frames and
//! header blocks. No crate serves this side under the project's licence,
//! so only this minimum is written here; zlib is flate2's.
mod dictionary;
pub mod frame;
pub mod headers;
