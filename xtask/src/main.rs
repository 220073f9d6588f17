//! `cargo xtask`: toolchain setup, builds, the test suite, and runs on real kernels.
use clap::{Parser, Subcommand};

mod setup;
mod util;

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
    /// Set up, then run the whole test suite (as root: the privileged tests too).
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build release, then run `lazyvma ARGS...` on this live kernel (as root).
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::Test { args } => {
            setup::run()?;
            // Privileged tests skip for a developer without root, but fail in the suite.
            std::env::set_var("LAZYVMA_REQUIRE_ROOT", "1");
            util::cargo(&["test", "--workspace", "--release"], &args)
        }
        Cmd::Run { args } => {
            setup::run()?;
            util::cargo(&["build", "--release", "--bin", "lazyvma"], &[])?;
            let bin = util::workspace_root().join("target/release/lazyvma");
            util::run(std::process::Command::new(bin).args(&args))
        }
    }
}
