//! `lazyvma merge A.json B.json ... [-o fleet.json]`.
use std::path::PathBuf;

use crate::report::{load, merge, schema::Doc, write};

#[derive(clap::Args)]
pub struct Args {
    /// Reports to merge (snapshot, trace or merge outputs), all of one schema version and histogram contract.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the fleet report here (all at once) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub out: Option<PathBuf>,
}

/// Every file loaded (each checked alone), then merged when there is more than one.
pub fn load_all(files: &[PathBuf]) -> anyhow::Result<Doc> {
    let docs = files.iter().map(|f| Ok((f.display().to_string(), load::load(f)?))).collect::<anyhow::Result<Vec<_>>>()?;
    if docs.len() == 1 {
        return Ok(docs.into_iter().next().expect("one").1);
    }
    let doc = merge::merge(&docs)?;
    for (host, n) in merge::repeated_hosts(&doc) {
        eprintln!("lazyvma: host {} appears in {n} inputs: the totals add them as if they were {n} machines", crate::escape::ctl(&host));
    }
    Ok(doc)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let doc = load_all(&args.files)?;
    write::output(args.out.as_deref(), &(crate::escape::json_pretty(&doc)? + "\n"))
}
