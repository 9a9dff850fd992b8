//! The crate is linked by `bpf-linker`, a binary cargo does not know about:
//! rebuild whenever the linker on PATH changes.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
