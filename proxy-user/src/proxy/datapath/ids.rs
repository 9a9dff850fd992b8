//! Ids for frontends and backends.
//!
//! Ids advance monotonically (wrapping, skipping those in use) instead of
//! reusing the lowest free one: a BPF program that read a frontend's id just
//! before the frontend was deleted must not find a different frontend's slots
//! under that id a moment later.
use std::collections::HashSet;

#[derive(Debug)]
pub struct IdAllocator {
    next: u32,
    in_use: HashSet<u32>,
}

impl Default for IdAllocator {
    fn default() -> Self {
        Self {
            next: 1,
            in_use: HashSet::new(),
        }
    }
}

impl IdAllocator {
    /// Hands out an id not in use. Id 0 is never used, so a zeroed value in
    /// a map can never be mistaken for a reference.
    pub fn allocate(&mut self) -> u32 {
        loop {
            let id = self.next;
            self.next = self.next.checked_add(1).unwrap_or(1);
            if self.in_use.insert(id) {
                return id;
            }
        }
    }

    /// Records an id found in a pinned map, and moves past it so that new
    /// ids do not recycle recently used ones.
    pub fn adopt(&mut self, id: u32) {
        self.in_use.insert(id);
        if id >= self.next {
            self.next = id.checked_add(1).unwrap_or(1);
        }
    }

    pub fn release(&mut self, id: u32) {
        self.in_use.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_ids_are_not_reused_at_once() {
        let mut ids = IdAllocator::default();
        let first = ids.allocate();
        ids.release(first);
        assert_ne!(ids.allocate(), first);
    }

    #[test]
    fn adopted_ids_are_skipped_and_never_zero() {
        let mut ids = IdAllocator::default();
        ids.adopt(1);
        ids.adopt(7);
        assert_eq!(ids.allocate(), 8);
        let mut wrapping = IdAllocator::default();
        wrapping.adopt(u32::MAX);
        assert_eq!(wrapping.allocate(), 1);
    }
}
