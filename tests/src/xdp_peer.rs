//! The pass-only XDP program (`skiff-xdp-pass`) on the fabric side of each
//! node's uplink, as a NIC's peer would take frames at once: on a veth, a
//! frame the uplink's XDP program transmits back (XDP_TX) waits in the
//! peer's ring until something runs the peer's NAPI, which the uplink
//! schedules only when the peer runs an XDP program itself
//! (drivers/net/veth.c, `veth_xdp_flush`). It goes with the port, which
//! goes with the fabric's netns at teardown.
use crate::binaries::xdp_pass_object;
use crate::cmd::ip_in;
use crate::error::Result;

/// Attaches the program in native mode to `port` in netns `fabric`.
pub(crate) fn attach(fabric: &str, port: &str) -> Result<()> {
    let object = xdp_pass_object()?;
    ip_in(
        fabric,
        &format!(
            "link set dev {port} xdpdrv obj {} sec xdp",
            object.display()
        ),
    )
    .map(drop)
}
