//! The transport protocols of Service and EndpointSlice ports.

/// Transport protocols the datapath balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// Reads a Kubernetes `protocol` field, where absent means TCP. `None`
    /// for SCTP and anything else the datapath does not balance.
    pub fn from_field(field: Option<&str>) -> Option<Self> {
        match field.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }
}
