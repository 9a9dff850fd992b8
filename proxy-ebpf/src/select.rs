//! Backend selection, shared by the socket hooks and the per-packet NAT:
//! the frontend an address and port stand for, whether a source may use it
//! (`loadBalancerSourceRanges`), and which of its backends a new connection
//! or flow goes to (client affinity, else a random slot for a connection,
//! the Maglev table's or the flow hash's slot for a flow).
//!
//! Only finding a frontend and a backend's address depend on the address
//! family (`Family`); slots, affinity and Maglev tables hold ids from one
//! space shared by both families, so the choice itself is the same code.
use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    maps::lpm_trie::Key,
};
use proxy_common::{
    AffinityKey, AffinityValue, Backend, BackendId, BackendSlotKey, CtKeyOf, Ipv6Words,
    MAGLEV_MAX_SIZE, SERVICE_FLAG_AFFINITY, SERVICE_FLAG_EXTERNAL, ServiceKey, ServiceKey6,
    ServiceValue, SourceRange,
};

use crate::maps::{
    AFFINITY, BACKEND_SLOTS, BACKENDS, BACKENDS6, MAGLEV, SERVICES, SERVICES6, SOURCE_KEY6,
    SOURCE_RANGES, SOURCE_RANGES6,
};

/// An address family's frontend and backend maps.
pub trait Family {
    type Address: Copy;
    /// The frontend at `address`, `port` (network byte order) and
    /// `protocol`, if there is one.
    fn service(address: Self::Address, port: u16, protocol: u8) -> Option<ServiceValue>;
    /// A backend's address and port (network byte order).
    fn backend(id: BackendId) -> Option<(Self::Address, u16)>;
}

pub struct V4;
pub struct V6;

impl Family for V4 {
    type Address = u32;

    #[inline(always)]
    fn service(address: u32, port: u16, protocol: u8) -> Option<ServiceValue> {
        service(address, port, protocol)
    }

    #[inline(always)]
    fn backend(id: BackendId) -> Option<(u32, u16)> {
        backend(id).map(|backend| (backend.address, backend.port))
    }
}

impl Family for V6 {
    type Address = Ipv6Words;

    #[inline(always)]
    fn service(address: Ipv6Words, port: u16, protocol: u8) -> Option<ServiceValue> {
        let key = ServiceKey6 {
            address,
            port,
            protocol,
            pad: 0,
        };
        // SAFETY: read and copied.
        (unsafe { SERVICES6.get(&key) }).copied()
    }

    #[inline(always)]
    fn backend(id: BackendId) -> Option<(Ipv6Words, u16)> {
        // SAFETY: read and copied.
        (unsafe { BACKENDS6.get(id) })
            .copied()
            .map(|backend| (backend.address, backend.port))
    }
}

/// The frontend at `address`, `port` and `protocol`, if there is one.
#[inline(always)]
pub fn service(address: u32, port: u16, protocol: u8) -> Option<ServiceValue> {
    let key = ServiceKey {
        address,
        port,
        protocol,
        pad: 0,
    };
    // SAFETY: read and copied.
    (unsafe { SERVICES.get(&key) }).copied()
}

#[inline(always)]
pub fn backend(id: BackendId) -> Option<Backend> {
    // SAFETY: read and copied.
    (unsafe { BACKENDS.get(id) }).copied()
}

/// Whether `source` is in one of the frontend's source ranges.
#[inline(always)]
pub fn source_allowed(service: &ServiceValue, source: u32) -> bool {
    let key = Key::new(
        64,
        SourceRange {
            service_id: service.id,
            address: source,
        },
    );
    SOURCE_RANGES.get(&key).is_some()
}

/// Whether the IPv6 `source` is in one of the frontend's source ranges.
/// The 24-byte key is built in a per-CPU map value, not on the stack: the
/// IPv6 ingress path calling this sits near the verifier's 512 bytes.
#[inline(always)]
pub fn source_allowed6(service: &ServiceValue, source: &Ipv6Words) -> bool {
    let Some(key) = SOURCE_KEY6.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a live map value of this CPU's, which nothing else on it
    // uses while this program runs; written field by field (the key is
    // packed).
    unsafe {
        (*key).prefix_len = 32 + 128;
        (*key).data.service_id = service.id;
        (*key).data.address = *source;
        SOURCE_RANGES6.get(&*key).is_some()
    }
}

/// The backend of a new connection to `service`: the sticky backend of
/// `client` (asked only under affinity) while its affinity holds, else a
/// random slot's.
#[inline(always)]
pub fn connect_backend(service: &ServiceValue, client: impl FnOnce() -> u64) -> Option<BackendId> {
    if service.flags & SERVICE_FLAG_AFFINITY == 0 {
        // The agent writes slots and backends before it raises a
        // frontend's count, so a miss is a bug; the caller refuses the
        // connect rather than let it go to an address no one answers.
        return slot_backend(service.id, random_slot(service));
    }
    with_affinity(service, client(), || Some(random_slot(service)))
}

#[inline(always)]
fn random_slot(service: &ServiceValue) -> u32 {
    // SAFETY: a helper call without arguments.
    (unsafe { bpf_get_prandom_u32() }) % service.backend_count
}

/// The backend of a new flow: the sticky one of `client` (the source
/// address's affinity client) under affinity, else the Maglev table's pick
/// for the flow hash (external frontends), else the hash's slot.
#[inline(always)]
pub fn flow_backend(
    service: &ServiceValue,
    client: u64,
    hash: u32,
    maglev_size: u32,
) -> Option<BackendId> {
    if service.flags & SERVICE_FLAG_AFFINITY != 0 {
        return with_affinity(service, client, || {
            Some(flow_slot(service, hash, maglev_size))
        });
    }
    slot_backend(service.id, flow_slot(service, hash, maglev_size))
}

/// The slot a flow hashing to `hash` goes to. A Maglev table whose entry
/// points past the count (the agent is just shrinking the frontend) falls
/// back to the plain hash.
#[inline(always)]
fn flow_slot(service: &ServiceValue, hash: u32, maglev_size: u32) -> u32 {
    let fallback = hash % service.backend_count;
    if service.flags & SERVICE_FLAG_EXTERNAL == 0 {
        return fallback;
    }
    let size = maglev_size as usize;
    if size == 0 {
        return fallback;
    }
    let Some(table) = MAGLEV.get_ptr(service.id) else {
        return fallback;
    };
    // The verifier does not bound a remainder by its divisor: this check
    // bounds the index (and so the size must not be checked before it, or
    // the compiler would drop this one as redundant).
    let index = hash as usize % size;
    if index >= MAGLEV_MAX_SIZE {
        return fallback;
    }
    // SAFETY: the pointer is to a live map value, and `index` is in bounds.
    let slot = unsafe { (*table).slots[index] };
    if slot < service.backend_count {
        slot
    } else {
        fallback
    }
}

/// The hash of a flow, without its destination address: a flow to an
/// external frontend hashes alike on every node it may enter (a NodePort
/// is reached at each node's own address), mixed with the cluster's seed.
/// `source` is the source address folded into 32 bits.
#[inline(always)]
pub fn flow_hash<A>(key: &CtKeyOf<A>, source: u32, seed: u32) -> u32 {
    let ports = (u32::from(key.sport) << 16) | u32::from(key.dport);
    let mut hash = source ^ ports.rotate_left(7) ^ u32::from(key.protocol) ^ seed;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x7feb_352d);
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(0x846c_a68b);
    hash ^ (hash >> 16)
}

/// The backend id in one slot of a frontend.
#[inline(always)]
fn slot_backend(service_id: u32, slot: u32) -> Option<BackendId> {
    let key = BackendSlotKey { service_id, slot };
    // SAFETY: read and copied.
    (unsafe { BACKEND_SLOTS.get(&key) }).copied()
}

/// The backend of a new connection or flow to an affinity frontend: the
/// client's sticky backend while its entry holds (not expired, and its
/// slot still holds that backend), else the one in the slot `pick` chooses,
/// which the client then sticks to.
#[inline(always)]
fn with_affinity(
    service: &ServiceValue,
    client: u64,
    pick: impl FnOnce() -> Option<u32>,
) -> Option<BackendId> {
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = AffinityKey {
        client,
        service_id: service.id,
        pad: 0,
    };
    let timeout_ns = u64::from(service.affinity_timeout) * 1_000_000_000;
    // SAFETY: read and copied.
    let sticky = (unsafe { AFFINITY.get(&key) }).copied().filter(|entry| {
        now.wrapping_sub(entry.last_used_ns) <= timeout_ns
            && entry.slot < service.backend_count
            && slot_backend(service.id, entry.slot) == Some(entry.backend_id)
    });
    let (slot, backend_id) = match sticky {
        Some(entry) => (entry.slot, entry.backend_id),
        None => {
            let slot = pick()?;
            (slot, slot_backend(service.id, slot)?)
        }
    };
    let entry = AffinityValue {
        last_used_ns: now,
        backend_id,
        slot,
    };
    // An LRU insert only fails under memory pressure; the client just loses
    // its stickiness.
    let _ = AFFINITY.insert(&key, &entry, 0);
    Some(backend_id)
}
