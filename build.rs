//! Link settings of the `quiver` binary.

fn main() {
    // A position-independent executable carries one dynamic relocation per pointer in its
    // read-only data (about 100k here, 2.5 MB of `.rela.dyn`), and the loader reads them all at
    // every start: pages that stay resident for the life of the process. Packed relative
    // relocations (DT_RELR, glibc ≥ 2.36, binutils ≥ 2.38) hold the same information in a few
    // kilobytes. Only where the target is Linux/GNU and the linker knows the option.
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" && linker_supports_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Whether the system linker accepts `-z pack-relative-relocs` (older binutils reject it).
fn linker_supports_relr() -> bool {
    std::process::Command::new("ld")
        .arg("--help")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("pack-relative-relocs"))
        .unwrap_or(false)
}
