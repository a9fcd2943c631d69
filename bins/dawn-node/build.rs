//! Function layout (`cargo xtask dist`, see xtask/src/layout.rs): when
//! `DAWN_NODE_SYMBOL_ORDER` names a file of symbol names, `dawn-node` is
//! linked with those functions first (lld's `--symbol-ordering-file`). Only
//! this binary's link changes; the dependencies are not rebuilt.

fn main() {
    println!("cargo:rerun-if-env-changed=DAWN_NODE_SYMBOL_ORDER");
    let Some(file) = std::env::var_os("DAWN_NODE_SYMBOL_ORDER").filter(|f| !f.is_empty()) else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    println!("cargo:rerun-if-changed={}", file.display());
    println!(
        "cargo:rustc-link-arg-bin=dawn-node=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    // Functions of the list missing from this build (inlined away) are
    // expected; lld would warn about each one.
    println!("cargo:rustc-link-arg-bin=dawn-node=-Wl,--no-warn-symbol-ordering");
}
