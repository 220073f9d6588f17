//! `lazyvma snapshot`: one iter/task_vma pass streamed into the eager/lazy estimate
//! (`lazyvma_model::snapshot_stream`) → report. Whole VMAs are kept only for what lists
//! them (`--vmas`'s processes, `--topology`).
pub mod decode;
pub mod reader;
pub mod render;

use lazyvma_model::snapshot::{Estimate, LazyState, LiveObjects, ProcessEstimate};
use lazyvma_model::snapshot_stream::{Stream, VmaIn};
use lazyvma_model::topology::{Topology, VmaTopo};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::load::btf::{Btf, Offsets};
use crate::sys;

pub use lazyvma_model::sizes::Sizes;

/// What `/sys/kernel/slab` says, beside our count.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SlabCheck {
    pub cache: String,
    /// `None` when the cache is merged (its count would include foreign objects) or unreadable.
    pub objects: Option<u64>,
    pub merged_into: Option<String>,
    pub merged_with: Vec<String>,
}

pub struct Report {
    pub estimate: Estimate,
    /// The processes to list: the selection, or every process; by savings, largest first.
    pub shown: Vec<ProcessEstimate>,
    pub selected: bool,
    pub sizes: Sizes,
    pub slab: Vec<SlabCheck>,
    pub stats: decode::PassStats,
    pub elapsed_ms: f64,
    /// Parts of `elapsed_ms`: BTF parse, BPF load (verifier), the pass itself and the estimate.
    pub phases_ms: [(&'static str, f64); 3],
    pub kernel: String,
    /// Per shown pid, its VMAs with their lazy state (only when asked for).
    pub vmas: BTreeMap<u32, Vec<(VmaTopo, LazyState)>>,
    /// Chain length → VMAs with an anon_vma and that many chain entries (whole system).
    pub chain_lens: BTreeMap<u32, u64>,
    /// What the pass read (whole system), when asked for: `--topology` writes it.
    pub topology: Option<Topology>,
    /// Per process of `estimate.processes`: its VMAs by lazy state, and with truncated chains.
    pub states: Vec<[u64; 4]>,
    pub truncated: Vec<u64>,
}

impl Report {
    /// The estimate's first process of `pid`.
    pub fn index(&self, pid: u32) -> Option<usize> {
        self.estimate.processes.iter().position(|p| p.pid == pid)
    }
}

fn slab_check(cache: &str) -> SlabCheck {
    match sys::slab_cache(cache) {
        Ok(c) => SlabCheck {
            cache: cache.into(),
            objects: if c.merged_into.is_some() { None } else { c.objects },
            merged_into: c.merged_into,
            merged_with: c.merged_with,
        },
        Err(_) => SlabCheck { cache: cache.into(), objects: None, merged_into: None, merged_with: vec![] },
    }
}

/// Bytes the lazy design would not hold for this process.
pub fn savings(p: &ProcessEstimate, s: &Sizes) -> i64 {
    let b = |c: &LiveObjects| s.rmap_bytes(c.anon_vma, c.anon_vma_chain) as i64;
    b(&p.eager) - b(&p.lazy)
}

/// `pids`: `None` = every process. A selected pid the pass did not see (a kernel thread,
/// or gone meanwhile) is listed with zeros. `with_vmas`: keep the shown processes' VMAs;
/// `topology`: keep the whole topology. `sizes`: `load::sizes::load`'s, read once per run.
/// `offsets`: resolved once per run by a caller that passes many times (serve), else here.
pub fn run(btf_path: Option<&Path>, offsets: Option<&Offsets>, sizes: &Sizes, pids: Option<&[u32]>, with_vmas: bool, topology: bool) -> anyhow::Result<Report> {
    let t0 = std::time::Instant::now();
    // Our BTF parse is gone before aya's: one copy of vmlinux's BTF at a time.
    let offsets = match offsets {
        Some(o) => std::borrow::Cow::Borrowed(o),
        None => std::borrow::Cow::Owned(Offsets::resolve(&Btf::load(btf_path)?)?),
    };
    let btf_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = std::time::Instant::now();
    let mut bpf = reader::load(&offsets, btf_path, topology)?;
    let load_ms = t1.elapsed().as_secs_f64() * 1e3;
    let anon_vma = sys::slab_cache("anon_vma").ok();
    // The slab's count sizes the index once (a merged cache counts foreign objects).
    let hint = anon_vma.as_ref().filter(|c| c.merged_into.is_none()).and_then(|c| c.objects).unwrap_or(0).min(1 << 26);
    // An eighth more: the pass may meet anon_vmas made since (growing costs 1.5× at once).
    let mut stream = Stream::new((hint + hint / 8) as usize);
    let mut whole = topology.then(decode::TopoBuilder::default);
    // mm → the VMAs of a process to list.
    let mut kept: HashMap<u64, Vec<VmaTopo>> = HashMap::new();
    let keep = |pid: u32| with_vmas && pids.is_none_or(|p| p.contains(&pid));
    let mut stats = decode::PassStats { program: reader::pass_name(&bpf), ..Default::default() };
    let mut chain = Vec::with_capacity(lazyvma_model::abi::CHAIN_EMIT_MAX as usize);
    let stream_ref = std::cell::RefCell::new(&mut stream);
    let mut passes = reader::open(&mut bpf)?;
    decode::each_vma(
        &mut passes,
        &mut stats,
        |a| stream_ref.borrow().ahead(a),
        |v, avcs| {
            if let Some(b) = &mut whole {
                b.vma(v, avcs);
            }
            chain.clear();
            chain.extend(avcs.iter().map(|a| a.anon_vma));
            let vi = VmaIn {
                tid: v.tid,
                mm: v.mm,
                vma: v.vma,
                start: v.vm_start,
                end: v.vm_end,
                anon_vma: (v.anon_vma != 0).then_some(v.anon_vma),
                chain: &chain,
                chain_len: v.chain_len as u32,
            };
            let mut new = None;
            let fresh = stream_ref.borrow_mut().vma(&vi, || {
                new = Some(v.pid);
                (v.pid, decode::comm(&v.comm))
            });
            if new.is_some_and(keep) {
                kept.insert(v.mm, vec![]);
            }
            if fresh {
                if let Some(k) = kept.get_mut(&v.mm) {
                    k.push(decode::vma_topo(v, avcs));
                }
            }
        },
    )?;
    if stats.program == "iter/task" {
        stats.passes = Some(passes.passes());
    }
    drop(passes);
    drop((bpf, stream_ref));
    stats.duplicate_vmas = stream.duplicates() as usize;
    let streamed = stream.finish(&lazyvma_model::knobs::Knobs::default())?;
    let estimate = streamed.estimate.clone();
    let elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;

    let sizes = sizes.clone();
    let mut shown: Vec<ProcessEstimate> = match pids {
        None => estimate.processes.clone(),
        Some(pids) => pids
            .iter()
            .map(|&pid| {
                estimate.processes.iter().find(|p| p.pid == pid).cloned().unwrap_or_else(|| ProcessEstimate {
                    pid,
                    comm: crate::sys::proc_text(format!("/proc/{pid}/comm")).unwrap_or_default().trim().into(),
                    vmas: 0,
                    eager: LiveObjects::default(),
                    lazy: LiveObjects::default(),
                })
            })
            .collect(),
    };
    shown.sort_by_key(|p| (std::cmp::Reverse(savings(p, &sizes)), p.pid));
    // In topology order, a later process of the same pid replacing an earlier one.
    let mut by_mm: Vec<(u64, Vec<VmaTopo>)> = kept.into_iter().collect();
    let mms = streamed.mms();
    by_mm.sort_by_key(|(mm, _)| mms.get(mm).copied());
    let mut vmas = BTreeMap::new();
    for (mm, list) in by_mm {
        let pid = estimate.processes[mms[&mm] as usize].pid;
        let st = list.iter().map(|v| streamed.links().state(mm, v.anon_vma, v.chain_len)).collect::<Vec<_>>();
        vmas.insert(pid, list.into_iter().zip(st).collect());
    }
    let slab = ["anon_vma", "anon_vma_chain", "vm_area_struct"].map(slab_check).to_vec();
    let phases_ms = [("btf", btf_ms), ("load", load_ms), ("iterate_and_estimate", elapsed_ms - btf_ms - load_ms)];
    Ok(Report {
        estimate,
        shown,
        selected: pids.is_some(),
        sizes,
        slab,
        stats,
        elapsed_ms,
        phases_ms,
        kernel: sys::uname().0,
        vmas,
        chain_lens: streamed.chain_lens.clone(),
        topology: whole.map(|b| b.topo),
        states: streamed.states.clone(),
        truncated: streamed.truncated.clone(),
    })
}
