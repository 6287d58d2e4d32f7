// Rebuild the object when bpf-linker changes (for example after `cargo xtask
// setup` rebuilt it for another LLVM).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
