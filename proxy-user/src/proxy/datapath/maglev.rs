//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): the lookup table
//! that maps a flow hash to a backend for external frontends.
//!
//! The table depends only on the backends' identities (address, port,
//! protocol), the table size and the cluster's seed, never on the order the
//! backends arrive in or on node-local ids: every node builds the same
//! table, so a flow picks the same backend whichever node it enters, and a
//! removed backend's entries go to the others while most of theirs stay.
use std::{fmt, str::FromStr};

use proxy_common::MAGLEV_MAX_SIZE;

use super::keys::BackendKey;

/// The table size: a prime, so that every backend's walk visits every
/// entry, and no larger than the map's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevSize(u32);

impl MaglevSize {
    pub const DEFAULT: Self = Self(MAGLEV_MAX_SIZE as u32);

    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for MaglevSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let size: u32 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        if !(2..=MAGLEV_MAX_SIZE as u32).contains(&size) || !is_prime(size) {
            return Err(format!(
                "{size} is not a prime within 2..={MAGLEV_MAX_SIZE} (e.g. 251, 1021, 4093, 16381)"
            ));
        }
        Ok(Self(size))
    }
}

impl fmt::Display for MaglevSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// Entry `i` of the result is the index, in `backends`, of the backend that
/// flows hashing to `i` go to. Empty for no backends.
pub fn table(backends: &[BackendKey], size: MaglevSize, seed: u32) -> Vec<u32> {
    let size = size.get() as u64;
    if backends.is_empty() {
        return Vec::new();
    }
    // Each backend walks the table from its own offset in its own steps,
    // both derived from its identity alone.
    let walks: Vec<(u64, u64)> = backends
        .iter()
        .map(|backend| {
            let identity = backend.identity();
            let offset = hash(&identity, seed, 0) % size;
            let skip = hash(&identity, seed, 1) % (size - 1) + 1;
            (offset, skip)
        })
        .collect();
    // Backends take turns in identity order, so the arrival order of the
    // list does not matter.
    let mut turns: Vec<usize> = (0..backends.len()).collect();
    turns.sort_by_key(|&i| backends[i].identity());

    let mut entries = vec![u32::MAX; size as usize];
    let mut next = vec![0u64; backends.len()];
    let mut filled = 0;
    'fill: loop {
        for &i in &turns {
            let (offset, skip) = walks[i];
            let mut entry = (offset + next[i] * skip) % size;
            while entries[entry as usize] != u32::MAX {
                next[i] += 1;
                entry = (offset + next[i] * skip) % size;
            }
            entries[entry as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    entries
}

/// FNV-1a over the seed, a salt and the bytes, then the splitmix64
/// finaliser: stable across Rust versions and machines, unlike std's hasher.
fn hash(bytes: &[u8], seed: u32, salt: u8) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.to_le_bytes().iter().chain([salt].iter()).chain(bytes) {
        state ^= u64::from(*byte);
        state = state.wrapping_mul(0x0000_0100_0000_01b3);
    }
    state ^= state >> 30;
    state = state.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    state ^= state >> 27;
    state = state.wrapping_mul(0x94d0_49bb_1331_11eb);
    state ^ (state >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_common::{Backend, PROTO_TCP};

    fn backend(last_octet: u8) -> BackendKey {
        BackendKey::V4(Backend {
            address: u32::from_ne_bytes([10, 244, 1, last_octet]),
            port: 8080u16.to_be(),
            protocol: PROTO_TCP,
            pad: 0,
        })
    }

    fn owners(backends: &[BackendKey], size: MaglevSize) -> Vec<BackendKey> {
        table(backends, size, 7)
            .into_iter()
            .map(|i| backends[i as usize])
            .collect()
    }

    #[test]
    fn the_table_does_not_depend_on_the_order_backends_arrive_in() {
        let forward: Vec<BackendKey> = (1..=5).map(backend).collect();
        let mut backward = forward.clone();
        backward.reverse();
        assert_eq!(
            owners(&forward, MaglevSize::DEFAULT),
            owners(&backward, MaglevSize::DEFAULT)
        );
    }

    #[test]
    fn every_backend_gets_an_equal_share() {
        let backends: Vec<BackendKey> = (1..=7).map(backend).collect();
        let entries = table(&backends, MaglevSize::DEFAULT, 7);
        let share = MAGLEV_MAX_SIZE / backends.len();
        for i in 0..backends.len() as u32 {
            let count = entries.iter().filter(|&&e| e == i).count();
            assert!(
                count == share || count == share + 1,
                "backend {i} got {count}"
            );
        }
    }

    #[test]
    fn removing_a_backend_moves_few_flows_of_the_others() {
        let before: Vec<BackendKey> = (1..=10).map(backend).collect();
        let after: Vec<BackendKey> = before
            .iter()
            .copied()
            .filter(|b| *b != backend(4))
            .collect();
        let (old, new) = (
            owners(&before, MaglevSize::DEFAULT),
            owners(&after, MaglevSize::DEFAULT),
        );
        let kept = old.iter().filter(|owner| **owner != backend(4)).count();
        let moved = old
            .iter()
            .zip(&new)
            .filter(|(old, new)| **old != backend(4) && old != new)
            .count();
        // The paper reports a few percent; anything near 1/N would mean the
        // table is reshuffled, not consistent.
        assert!(moved * 100 / kept < 3, "{moved} of {kept} entries moved");
        assert!(new.iter().all(|owner| *owner != backend(4)));
    }

    #[test]
    fn the_seed_changes_the_table() {
        let backends: Vec<BackendKey> = (1..=3).map(backend).collect();
        assert_ne!(
            table(&backends, MaglevSize::DEFAULT, 1),
            table(&backends, MaglevSize::DEFAULT, 2)
        );
    }

    #[test]
    fn sizes_must_be_primes_that_fit_the_map() {
        assert_eq!("251".parse::<MaglevSize>().unwrap().get(), 251);
        for bad in ["0", "1", "16380", "16411", "65537", "big"] {
            assert!(bad.parse::<MaglevSize>().is_err(), "{bad} was accepted");
        }
    }
}
