#![no_std]
// The library target exists so that host-side tooling (clippy, rust-analyzer)
// can reason about the crate; the programs live in main.rs.
