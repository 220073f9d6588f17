//! `cargo xtask`: toolchain setup, builds, the test suite, and runs on real kernels.
use clap::{Parser, Subcommand};

mod bench;
mod debian;
#[cfg(test)]
mod deps;
mod fidelity;
mod fuzz;
mod initramfs;
mod selftests;
mod setup;
mod trace_rows;
mod userland;
mod util;
mod vm;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what lazyvma needs to build (idempotent, one line per step).
    Setup,
    /// Set up, then run the whole test suite (as root: the privileged tests too) and 10 s of
    /// each fuzz target, then the VM smoke matrix (amd64/arm64 x 5.10/6.1/6.12), the
    /// fidelity suite on those kernels and the booted userland's checks (amd64 6.12,
    /// docs/userland.md).
    Test {
        /// Skip the VM smoke matrix, the fidelity suite and the userland run.
        #[arg(long)]
        no_vm: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build release, then run `lazyvma ARGS...` on this live kernel (as root).
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run CMD as root on a Debian cloud kernel under QEMU; exits with CMD's status.
    Vm(vm::Args),
    /// Only the VM smoke matrix of `test`: the user's commands on every kernel, checked.
    VmMatrix(vm::matrix::Args),
    /// `lazyvma trace` vs the spec on every kernel (also run by `test` after the matrix).
    Fidelity(fidelity::Args),
    /// The kernel's mm selftests under `lazyvma trace -j` on this host (or `--guest`s): every
    /// row exact or flagged (the host run is also run by `test`, before the guests).
    Selftests(selftests::Args),
    /// The libFuzzer targets (recording, report, scenario): saved crashes, then N s each.
    Fuzz(fuzz::Args),
    /// Benchmarks (not tests): `bench overhead`, what tracing costs the traced machine.
    Bench(bench::Args),
    /// A booted Debian userland (systemd + 24 services) measured from inside (docs/userland.md).
    Userland(userland::Args),
}

/// One line per error, whatever RUST_BACKTRACE says: the cause chain is the message.
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == bench::proc::PEAK_RSS) {
        bench::proc::peak_rss_main(&args[2..]);
    }
    if let Err(e) = dispatch(Cli::parse().cmd) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Setup => setup::run(),
        Cmd::Test { no_vm, args } => {
            setup::run()?;
            // Privileged tests skip for a developer without root, but fail in the suite.
            std::env::set_var("LAZYVMA_REQUIRE_ROOT", "1");
            // Style first (rustfmt.toml; seconds): an hour of tests is not spent on a tree
            // that fails them.
            util::cargo(&["fmt", "--all", "--check"], &[])?;
            util::cargo(&["clippy", "--workspace", "--all-targets", "--release", "--", "-D", "warnings"], &[])?;
            util::cargo(&["test", "--workspace", "--release"], &args)?;
            // libFuzzer on the readers of recordings, reports and scenarios, seconds each.
            fuzz::suite()?;
            bench::quick()?;
            selftests::run(Default::default())?;
            if !no_vm {
                vm::matrix::run(Default::default())?;
                // The kernel's mm selftests in a real 6.12 kernel with fentry (issue 14).
                selftests::run(selftests::suite_guest())?;
                fidelity::run(fidelity::Args::default())?;
                // A booted Debian userland under `trace -p 1` (docs/userland.md): ~5 min,
                // ~9 more once on a machine whose cache has no rootfs.
                userland::suite()?;
            }
            Ok(())
        }
        Cmd::Run { args } => {
            setup::run()?;
            util::cargo(&["build", "--release", "--bin", "lazyvma"], &[])?;
            let bin = util::workspace_root().join("target/release/lazyvma");
            util::run(std::process::Command::new(bin).args(&args))
        }
        Cmd::Vm(args) => {
            setup::run()?;
            let status = vm::run(args)?;
            std::process::exit(status)
        }
        Cmd::VmMatrix(a) => {
            setup::run()?;
            vm::matrix::run(a)
        }
        Cmd::Fidelity(a) => {
            setup::run()?;
            fidelity::run(a)
        }
        Cmd::Selftests(a) => {
            setup::run()?;
            selftests::run(a)
        }
        Cmd::Fuzz(a) => {
            setup::run()?;
            setup::cargo_fuzz()?;
            fuzz::run(a)
        }
        Cmd::Bench(a) => {
            setup::run()?;
            bench::run(a)
        }
        Cmd::Userland(a) => {
            setup::run()?;
            userland::run(a)
        }
    }
}
