//! Waiting for a condition in a test: polled, with a deadline, never a
//! bare sleep.

use std::{
    thread,
    time::{Duration, Instant},
};

/// Polls `check` every 200 ms until it yields a value; panics naming
/// `what` once `timeout` has passed.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}
