//! `cargo xtask setup`: everything the build needs, installed from the registries this
//! machine reaches (rustup components, crates.io, Debian). Idempotent; one line per step.
use crate::util::{ok, stdout};
use std::io::Write;
use std::process::Command;

/// bpf-linker release known to build here; its LLVM feature must match nightly's LLVM major.
const BPF_LINKER: &str = "0.10.4";

/// cargo-fuzz for the libFuzzer targets in fuzz/ (run with the BPF nightly: -Zsanitizer).
const CARGO_FUZZ: &str = "0.13.2";

/// The step's name is printed before it runs (a 1.5 min install shows what it waits on)
/// and its outcome ends the same line: one line per step, the installers' own output kept
/// for the error.
fn step(name: &str, f: impl FnOnce() -> anyhow::Result<&'static str>) -> anyhow::Result<()> {
    print!("setup: {name:<34} ");
    let _ = std::io::stdout().flush();
    match f() {
        Ok(what) => {
            println!("{what}");
            Ok(())
        }
        Err(e) => {
            println!("FAILED");
            Err(e.context(format!("setup step `{name}` failed")))
        }
    }
}

/// Runs an installer quietly; on failure its output from the first `error` line (or its
/// tail) is the error. No backtrace: rustup prints one under RUST_BACKTRACE and it would
/// push the reason out.
fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.env("RUST_BACKTRACE", "0").output().map_err(|e| anyhow::anyhow!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.iter().position(|l| l.to_ascii_lowercase().starts_with("error")).unwrap_or(lines.len().saturating_sub(15));
    let tail = lines[from..lines.len().min(from + 15)].join("\n");
    anyhow::bail!("{:?} {:?} failed ({}):\n{tail}", cmd.get_program(), cmd.get_args().collect::<Vec<_>>(), out.status)
}

/// The BPF crate's nightly, from the file observer/build.rs reads too.
pub(crate) fn bpf_toolchain() -> &'static str {
    include_str!("../../observer-ebpf/rust-toolchain.toml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?.trim().strip_prefix('"')?.strip_suffix('"'))
        .expect("observer-ebpf/rust-toolchain.toml names a channel")
}

fn nightly_llvm_major(toolchain: &str) -> anyhow::Result<u32> {
    let vv = stdout(Command::new("rustc").arg(format!("+{toolchain}")).arg("-vV"));
    vv.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read {toolchain}'s LLVM version from `rustc +{toolchain} -vV`"))
}

fn bpf_linker_ok(major: u32) -> bool {
    let version = stdout(Command::new("bpf-linker").arg("--version"));
    if version.trim() != format!("bpf-linker {BPF_LINKER}") {
        return false;
    }
    // `--version` does not say which LLVM it loads; we note it when we install. Without a
    // note it was installed with default features, which means LLVM 22.
    match std::fs::read_to_string(linker_note()) {
        Ok(note) => note.trim() == major.to_string(),
        Err(_) => major == 22,
    }
}

/// Beside the binary `cargo install` writes: a CARGO_HOME other than ~/.cargo (a CI cache,
/// a second toolchain tree) must not read or overwrite the note of another install.
fn linker_note() -> std::path::PathBuf {
    install_root().join("bin/.bpf-linker-llvm")
}

fn install_root() -> std::path::PathBuf {
    let var = |k| std::env::var_os(k).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    var("CARGO_INSTALL_ROOT").or_else(|| var("CARGO_HOME")).or_else(|| var("HOME").map(|h| h.join(".cargo"))).unwrap_or_else(|| "/root/.cargo".into())
}

/// cargo-fuzz, for `cargo xtask fuzz` and the short fuzz runs of `test` (not a `setup` step:
/// building lazyvma does not need it).
pub fn cargo_fuzz() -> anyhow::Result<()> {
    step("cargo-fuzz", || {
        if stdout(Command::new("cargo").args(["fuzz", "--version"])).trim() == format!("cargo-fuzz {CARGO_FUZZ}") {
            return Ok("present");
        }
        exec(Command::new("cargo").args(["install", &format!("cargo-fuzz@{CARGO_FUZZ}"), "--locked", "--force"]))?;
        Ok("installed")
    })
}

pub fn run() -> anyhow::Result<()> {
    let nightly = bpf_toolchain();
    let plus = format!("+{nightly}");
    step(&format!("toolchain {nightly}"), || {
        if ok(Command::new("rustc").args([&plus, "--version"])) {
            return Ok("present");
        }
        exec(Command::new("rustup").args(["toolchain", "install", nightly, "--profile", "minimal", "--component", "rust-src"]))?;
        Ok("installed")
    })?;
    // The suite's style checks run on the stable toolchain (rust-toolchain pins none).
    step("rustfmt, clippy", || {
        let installed = stdout(Command::new("rustup").args(["component", "list", "--installed"]));
        let missing: Vec<&str> = ["rustfmt", "clippy"].into_iter().filter(|c| !installed.lines().any(|l| l.starts_with(c))).collect();
        if missing.is_empty() {
            return Ok("present");
        }
        exec(Command::new("rustup").arg("component").arg("add").args(&missing))?;
        Ok("installed")
    })?;
    step(&format!("{nightly} rust-src"), || {
        let installed = stdout(Command::new("rustup").args([&plus, "component", "list", "--installed"]));
        if installed.lines().any(|l| l.starts_with("rust-src")) {
            return Ok("present");
        }
        exec(Command::new("rustup").args([&plus, "component", "add", "rust-src"]))?;
        Ok("installed")
    })?;
    step("bpf-linker", || {
        let major = nightly_llvm_major(nightly)?;
        // 0.10.4's features: rust-llvm-20/21/22 (22 the default), LLVM loaded from the nightly.
        anyhow::ensure!((20..=22).contains(&major), "{nightly} has LLVM {major}; bpf-linker {BPF_LINKER} loads LLVM 20-22 only");
        if bpf_linker_ok(major) {
            return Ok("present");
        }
        let mut cmd = Command::new("cargo");
        cmd.args(["install", &format!("bpf-linker@{BPF_LINKER}"), "--locked", "--force"]);
        if major != 22 {
            cmd.args(["--no-default-features", "--features", &format!("rust-llvm-{major}")]);
        }
        exec(&mut cmd)?;
        std::fs::write(linker_note(), major.to_string())?;
        Ok("installed")
    })?;
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        step(&format!("target {target}"), || {
            let installed = stdout(Command::new("rustup").args(["target", "list", "--installed"]));
            if installed.lines().any(|l| l.trim() == target) {
                return Ok("present");
            }
            exec(Command::new("rustup").args(["target", "add", target]))?;
            Ok("installed")
        })?;
    }
    // Host packages for `cargo xtask vm`: QEMU for both guest arches, and the keyring
    // the private apt configuration verifies Debian's archive with. Chromium: the HTML
    // report test loads the page headless.
    // Prometheus: the serve test scrapes `lazyvma serve` with it and lints with promtool.
    // bpftrace: `xtask bench overhead`'s reference, the cost of the same call sites counted
    // by a generic tracer.
    let mut updated = false;
    for (name, pkgs) in [
        ("qemu-system x86_64 + aarch64", &["qemu-system-x86", "qemu-system-arm"][..]),
        ("debian-archive-keyring", &["debian-archive-keyring"][..]),
        ("chromium (html report test)", &["chromium"][..]),
        ("prometheus + promtool (serve test)", &["prometheus"][..]),
        ("bpftrace (bench overhead)", &["bpftrace"][..]),
        ("debootstrap (userland rootfs)", &["debootstrap"][..]),
    ] {
        step(name, || apt_install(pkgs, &mut updated))?;
    }
    Ok(())
}

/// Debian's cross gcc and static glibc for arm64, for `cargo xtask selftests --guest
/// aarch64:...` only (≈ 100 MB the rest of the suite does not need).
pub fn cross_gcc() -> anyhow::Result<()> {
    step("gcc-aarch64-linux-gnu (arm64 selftests)", || apt_install(&["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"], &mut false))
}

fn deb_installed(pkg: &str) -> bool {
    stdout(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg])).trim() == "install ok installed"
}

/// Installs the missing ones among `pkgs`; `apt-get update` runs once per setup, and only
/// when something is missing.
fn apt_install(pkgs: &[&str], updated: &mut bool) -> anyhow::Result<&'static str> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !deb_installed(p)).collect();
    if missing.is_empty() {
        return Ok("present");
    }
    if !*updated {
        exec(Command::new("apt-get").args(["-q", "update"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
        *updated = true;
    }
    exec(Command::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok("installed")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bpf_nightly_is_dated() {
        // A bare `nightly` would follow today's LLVM, past what bpf-linker 0.10.4 loads.
        let t = super::bpf_toolchain();
        assert!(t.len() == "nightly-YYYY-MM-DD".len() && t.starts_with("nightly-20"), "{t}");
    }
}
