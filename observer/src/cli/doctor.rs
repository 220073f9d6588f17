//! `lazyvma doctor`.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of tables.
    #[arg(short = 'j', long)]
    pub json: bool,
}

pub fn run(_args: Args, _btf: Option<&std::path::Path>) -> anyhow::Result<()> {
    anyhow::bail!("`lazyvma doctor` is not implemented yet")
}
