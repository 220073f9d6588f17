//! Builds `observer-ebpf` for `bpfel-unknown-none` with nightly + bpf-linker and leaves
//! the object in OUT_DIR, where `src/load/ebpf.rs` embeds it. The BPF build is per
//! architecture (`bpf_target_arch`) because kprobes read arguments from `pt_regs`.
use std::{env, path::PathBuf, process::Command};

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: {msg}\n       run `cargo xtask setup` (installs the BPF nightly, its rust-src and bpf-linker), then build again.\n");
    std::process::exit(1)
}

fn on_path(bin: &str) -> bool {
    env::var_os("PATH").map(|p| env::split_paths(&p).any(|d| d.join(bin).is_file())).unwrap_or(false)
}

/// `channel` of observer-ebpf/rust-toolchain.toml: the one place the BPF nightly is named.
fn bpf_toolchain(ebpf_dir: &std::path::Path) -> String {
    let file = ebpf_dir.join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", file.display())));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?.trim().strip_prefix('"')?.strip_suffix('"').map(String::from))
        .unwrap_or_else(|| fail(&format!("{} names no channel", file.display())))
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let ebpf_dir = manifest.parent().unwrap().join("observer-ebpf");
    let model_dir = manifest.parent().unwrap().join("model");
    for p in ["src", "Cargo.toml", "rust-toolchain.toml"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(p).display());
    }
    println!("cargo:rerun-if-changed={}", model_dir.join("src/abi.rs").display());
    println!("cargo:rerun-if-changed={}", model_dir.join("src/lib.rs").display());
    println!("cargo:rerun-if-changed={}", model_dir.join("src/trace_abi.rs").display());
    println!("cargo:rerun-if-changed={}", model_dir.join("src/hook_abi.rs").display());

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_dir = out_dir.join("ebpf-target");

    if !on_path("bpf-linker") {
        fail("bpf-linker is not on PATH: the BPF programs cannot be linked.");
    }
    if !on_path("rustup") {
        fail("rustup is not on PATH: the BPF programs need the nightly toolchain.");
    }
    let toolchain = bpf_toolchain(&ebpf_dir);

    let rustflags = [format!("--cfg=bpf_target_arch=\"{arch}\""), "-Cdebuginfo=2".to_string(), "-Clink-arg=--btf".to_string()].join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", &toolchain, "cargo", "build", "--release", "--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(ebpf_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // The outer (stable) cargo's settings must not leak into the nightly BPF build.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOC",
        "CARGO_MAKEFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    for (k, _) in env::vars() {
        if k.starts_with("CARGO_FEATURE_") || k.starts_with("CARGO_CFG_") || k.starts_with("CARGO_PKG_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap_or_else(|e| fail(&format!("could not run `rustup run {toolchain} cargo`: {e}")));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("rust-src") || stderr.contains("is not installed") || stderr.contains(&format!("toolchain '{toolchain}")) {
            fail(&format!("the {toolchain} toolchain or its rust-src component is missing:\n{stderr}"));
        }
        eprintln!("{stderr}");
        fail("building observer-ebpf failed (output above).");
    }
    let obj = target_dir.join("bpfel-unknown-none/release/lazyvma-ebpf");
    std::fs::copy(&obj, out_dir.join("lazyvma-ebpf.o")).unwrap_or_else(|e| fail(&format!("BPF object {} missing after build: {e}", obj.display())));
}
