//! One line per step on stdout, with the time since the run started, so a
//! long run shows where it is.

use std::time::Instant;

pub struct Progress {
    started: Instant,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    pub fn step(&self, message: impl std::fmt::Display) {
        let seconds = self.started.elapsed().as_secs();
        println!("bench [{:02}:{:02}] {message}", seconds / 60, seconds % 60);
    }
}
