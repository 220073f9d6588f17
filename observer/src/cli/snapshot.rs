//! `lazyvma snapshot`.
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use crate::{cgroup, report, snapshot, sys};

#[derive(clap::Args)]
pub struct Args {
    /// Report only these processes (the estimate still reads the whole system).
    #[arg(short = 'p', long = "pid", value_name = "PID[,PID...]", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Report only the processes of this cgroup and of the cgroups below it (absolute, or
    /// relative to the cgroup2 mount, else to a v1 hierarchy).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// List this many processes, largest savings first (text default 10, JSON and a -p/--cgroup
    /// selection default all; 0: the totals alone).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// With -j: list every VMA of the listed processes (addresses, chain, lazy state).
    #[arg(long, requires = "json")]
    pub vmas: bool,
    /// Attribute objects and savings to cgroups (v2 id and path).
    #[arg(long)]
    pub by_cgroup: bool,
    /// With --by-cgroup: this many cgroups keep their own row; the rest are summed into `other`.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "by_cgroup", value_parser = clap::value_parser!(u64).range(1..))]
    pub cgroup_cap: u64,
    /// Also write the pass's whole-system topology (processes, VMAs, chains, anon_vma
    /// fields) as JSON to FILE: what `lazyvma_model::seed` builds a model from.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Print one JSON object (a report document, see docs/report-schema.md) instead of tables.
    #[arg(short = 'j', long)]
    pub json: bool,
}

fn selection(args: &Args) -> anyhow::Result<Option<Vec<u32>>> {
    let mut pids = Vec::new();
    for &pid in &args.pids {
        if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process with pid {pid}");
        }
        pids.push(pid);
    }
    if let Some(cg) = &args.cgroup {
        pids.extend(cgroup::procs(&cgroup::resolve(cg, &cgroup::mounts())?)?);
    }
    if args.pids.is_empty() && args.cgroup.is_none() {
        return Ok(None);
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(Some(pids))
}

pub fn run(args: Args, btf: Option<&Path>) -> anyhow::Result<()> {
    sys::require_root("snapshot")?;
    let pids = selection(&args)?;
    let sizes = crate::load::sizes::load(btf, true)?;
    let snap = snapshot::run(btf, None, &sizes, pids.as_deref(), args.vmas, args.topology.is_some())?;
    if let (Some(path), Some(topology)) = (&args.topology, &snap.topology) {
        let json = serde_json::to_vec(topology)?;
        crate::safe_out::write(path, &json).with_context(|| format!("writing the topology to {}", path.display()))?;
    }
    // Cgroups of every process the pass saw, not only the listed ones.
    let cgroups = if args.by_cgroup { report::cgroup::attribute(&snap.estimate.processes, &snap.sizes, args.cgroup_cap as usize) } else { vec![] };
    if args.json {
        let doc = snapshot::render::SnapshotDoc { snapshot: snapshot::render::doc(&snap, args.top), report: report::from_snapshot::document(&snap, cgroups) };
        println!("{}", crate::escape::json_line(&doc.to_json()?)?);
    } else {
        print!("{}", crate::escape::lines(&snapshot::render::text(&snap, args.top)));
        if args.by_cgroup {
            print!("{}", crate::escape::lines(&report::render_text::cgroups_text(&cgroups)));
        }
    }
    Ok(())
}
