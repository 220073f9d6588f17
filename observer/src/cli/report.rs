//! `lazyvma report FILE... [-O text|markdown|json|html] [-o OUT]`.
use std::path::PathBuf;

use crate::report::{render_html, render_text, slabinfo, write};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Html,
}

#[derive(clap::Args)]
pub struct Args {
    /// Reports (`snapshot -j`, `trace -j`, `merge`); several are merged into a fleet report.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(short = 'O', long = "format", value_enum, default_value = "text")]
    pub format: Format,
    /// Write here (all at once) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Rows in the process and cgroup tables.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// A /proc/slabinfo copy taken with the (one) snapshot: adds the slab "active KB" table.
    #[arg(long, value_name = "FILE")]
    pub slabinfo: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let doc = super::merge::load_all(&args.files)?;
    let slab = |style| -> anyhow::Result<String> {
        let Some(p) = &args.slabinfo else { return Ok(String::new()) };
        let text = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("--slabinfo {}: {e}", p.display()))?;
        slabinfo::render(&doc, &text, style).map_err(|e| anyhow::anyhow!("--slabinfo {}: {e:#}", p.display()))
    };
    anyhow::ensure!(args.slabinfo.is_none() || matches!(args.format, Format::Text | Format::Markdown), "--slabinfo: text or markdown only");
    let text = match args.format {
        Format::Text => render_text::render(&doc, render_text::Style::Text, args.top) + &slab(render_text::Style::Text)?,
        Format::Markdown => render_text::render(&doc, render_text::Style::Markdown, args.top) + &slab(render_text::Style::Markdown)?,
        Format::Json => crate::escape::json_pretty(&doc)? + "\n",
        Format::Html => render_html::render(&doc, args.top),
    };
    write::output(args.out.as_deref(), &text)
}
