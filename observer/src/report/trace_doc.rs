//! `lazyvma trace -j` / `replay -j`'s document, typed: the tracer fills it (`trace/out`,
//! `record/meta.rs`), `trace -j` prints it, and `report` reads a trace JSON back into it and
//! makes the report document (`Doc`) from its fields. Here in `report/`, next to `Doc`, so
//! the report fuzz target (which compiles `report/` alone) reads trace JSON as the binary does.
//!
//! The shape is the one `trace -j` always had (about 20 readers: xtask fidelity, vm-matrix,
//! userland, the selftests, observer/tests): a key that is absent today is an `Option`
//! skipped when `None`, a key written as `null` an `Option` without the skip. Printed
//! through `serde_json::Value`, so every object's keys come out sorted, as before.
//! Old trace JSON still loads: keys a past lazyvma did not write default (`#[serde(default)]`),
//! and `sizes` may be the bare object sizes of before `lazyvma_model::sizes::Size`.
use lazyvma_model::sizes::{Size, Sizes};
use lazyvma_model::sweep::Sweep;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use super::lazy_rules::LazyRules;
use super::schema::{
    BpfProg, Cgroup, Doc, Flow, Flows, Hist, Histograms, Net, ObjectCounts, ObjectRow, Objects, Point, Recording, Side, Span, SCHEMA, VERSION,
};

/// The series `locks.wait_hist` becomes: anon_vma root rwsem waits, from `lock:contention_*`
/// (every waiter: rmap walks, fork, unlink), beside the rmap hook's own `rmap_lock_wait_ns`.
pub const LOCK_WAIT: &str = "anon_vma_lock_wait_ns";

/// A key present (maybe `null`) is `Some`, so `Option<Option<T>>` tells absent from null.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// anon_vma / anon_vma_chain allocations and frees; `unclassified` (neither size or kind)
/// only where something was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindFlows {
    pub anon_vma: Flow,
    pub anon_vma_chain: Flow,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclassified: Option<Flow>,
}

impl KindFlows {
    fn flows(&self) -> Flows {
        Flows { anon_vma: self.anon_vma, anon_vma_chain: self.anon_vma_chain }
    }

    /// (kind, counts) of every kind present.
    fn kinds(&self) -> impl Iterator<Item = (&'static str, Flow)> {
        [("anon_vma", Some(self.anon_vma)), ("anon_vma_chain", Some(self.anon_vma_chain)), ("unclassified", self.unclassified)]
            .into_iter()
            .filter_map(|(k, f)| Some((k, f?)))
    }
}

/// `sizes`: the three caches' sizes (`lazyvma_model::sizes`); a trace JSON from before
/// them has the bare object_size of anon_vma and anon_vma_chain, which were its bytes then.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TraceSizes {
    Caches(Sizes),
    ObjectSizes { anon_vma: u64, anon_vma_chain: u64 },
}

impl<'de> Deserialize<'de> for TraceSizes {
    /// Either shape, and when neither, what the current one lacks (not serde's "no variant").
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Bare {
            anon_vma: u64,
            anon_vma_chain: u64,
        }
        let v = Value::deserialize(d)?;
        if let Ok(Bare { anon_vma, anon_vma_chain }) = Bare::deserialize(&v) {
            return Ok(TraceSizes::ObjectSizes { anon_vma, anon_vma_chain });
        }
        Sizes::deserialize(&v).map(TraceSizes::Caches).map_err(|e| serde::de::Error::custom(format!("`sizes`: {e}")))
    }
}

impl TraceSizes {
    /// Bytes per object of `kind` and where they came from (bytes = slab_size, as a snapshot prices them).
    pub fn of(&self, kind: &str) -> (u64, String) {
        let av = kind == "anon_vma";
        match self {
            TraceSizes::Caches(s) => {
                let Size { slab_size, source, .. } = if av { &s.anon_vma } else { &s.anon_vma_chain };
                (*slab_size, source.clone())
            }
            TraceSizes::ObjectSizes { anon_vma, anon_vma_chain } => {
                (if av { *anon_vma } else { *anon_vma_chain }, format!("/sys/kernel/slab/{kind}/object_size (trace)"))
            }
        }
    }
}

/// `command`: the traced command line and how it ended (`null`s while it runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub argv: Vec<String>,
    pub exit_status: Option<i32>,
    pub signal: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingTracepoint {
    pub tracepoint: String,
    pub error: String,
}

/// `backend_detail`: one hook's backend and why (`load::backend::Choice`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendChoice {
    pub hook: String,
    pub backend: String,
    pub functions: Vec<String>,
    pub tracepoints: Vec<String>,
    pub note: Option<String>,
    pub reason: Option<String>,
}

/// One (process, phase) row: observed counts, and the model's beside them when fed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRow {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
    #[serde(flatten)]
    pub observed: KindFlows,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eager: Option<KindFlows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy: Option<KindFlows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_race_spares: Option<KindFlows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seed: Option<KindFlows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_modelled: Option<String>,
    /// A row the model counted at: its place among the model's rows, in the order the feed
    /// first counted at each (the text's model table keeps it). Not in the JSON, whose shape
    /// has its ~20 readers: `phases` is in the order of the first observed event.
    #[serde(skip)]
    pub model_order: Option<usize>,
}

/// `processes`: the traced tree, one row per process (`trace::tree::pids::Proc`, the
/// tracker's own record of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRow {
    /// Position in the tree by first appearance: 0 is the command (or the first -p pid).
    /// Stable across runs of the same program, unlike the tgid.
    pub proc: usize,
    pub tgid: u32,
    /// `proc` of the forking process; None for a root.
    pub parent: Option<usize>,
    pub phase: Option<u32>,
    pub execs: u32,
    pub exited: bool,
}

/// The records: `sent`/`lost` `null` when unknown (a recording cut short).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    #[serde(default)]
    pub sent: Option<u64>,
    #[serde(default)]
    pub received: u64,
    #[serde(default)]
    pub lost: Option<u64>,
    pub malformed: u64,
    pub stack_errors: u64,
    #[serde(default)]
    pub unpaired_hook_records: u64,
}

/// What the ops say the slab must show, in the slab report's terms (`trace::counts::opstats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Implied {
    /// Successful prepares that allocated their anon_vma (no neighbour lent one).
    pub prepare_new_anon_vma: u64,
    pub prepare_reused_neighbour: u64,
    /// anon_vma_fork calls whose parent VMA had an anon_vma, split by reuse.
    pub fork_new_anon_vma: u64,
    pub fork_reused_ancestor: u64,
    /// Σ L(src) over successful anon_vma_clone calls: the AVCs they allocated.
    pub clone_avc: u64,
    /// Σ L(vma) over unlink_anon_vmas calls: the AVCs they freed.
    pub unlink_avc: u64,
    /// anon_vmas __put_anon_vma freed (itself, plus its root when that was the last ref).
    pub put_anon_vma_frees: u64,
}

/// `ops` (`--ops`, or any function hook attached): `trace::counts::opstats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ops {
    pub counts: BTreeMap<String, u64>,
    pub implied: Implied,
    pub failed: u64,
    pub clone_avc_by_reason: BTreeMap<String, u64>,
    pub unlink_avc_by_reason: BTreeMap<String, u64>,
    pub merges: BTreeMap<String, u64>,
    pub launcher_ops: u64,
    pub chain_saturated: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// `rmap`: the rmap hook's walks and their root anon_vma lock waits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rmap {
    pub walks: u64,
    pub anon_walks: u64,
    pub by_caller: BTreeMap<String, u64>,
    pub locks: u64,
    pub contended: u64,
    pub wait_ns: Quantiles,
}

/// KSM / THP counts of a (process, phase) or all (`trace::counts::ksm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEventCounts {
    /// Merges that took an anon_vma reference (err 0).
    pub ksm_merges: u64,
    pub ksm_merge_failures: u64,
    /// rmap_items that dropped their anon_vma reference. Tracepoint: only those a stable
    /// node's teardown removes (never its last item); hooks: every stable one.
    pub ksm_rmap_items_removed: u64,
    pub thp_faults: u64,
    /// `do_huge_pmd_anonymous_page` calls that returned VM_FAULT_FALLBACK: the fault went on
    /// to the PTE path, so it is no THP fault (5.10 calls it for every first fault of a PMD
    /// while THP is `always`, the VMA's size checked inside; a failed allocation falls back too).
    pub thp_fallbacks: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEventRow {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
    #[serde(flatten)]
    pub counts: KernelEventCounts,
}

/// The backend that saw KSM / THP faults (`null`: none attached).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEventBackends {
    pub ksm: Option<String>,
    pub thp_fault: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEvents {
    #[serde(flatten)]
    pub total: KernelEventCounts,
    pub unattributed_ksm_records: u64,
    pub phases: Vec<KernelEventRow>,
    pub backend: KernelEventBackends,
}

/// The kernel's slab count map over a run (`record::format::MapStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStats {
    pub full: u64,
    pub retired: u64,
}

/// One timeline point: live objects, ms since the trace started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimePoint {
    pub t_ms: u64,
    pub observed_live: Net,
    /// The fed model's live objects (`null`: not fed).
    pub eager_live: Option<Net>,
    pub lazy_live: Option<Net>,
}

/// Root rwsem waits (`lock:contention_*`) of one waiter or all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitQuantiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Waits {
    pub contentions: u64,
    pub read: u64,
    pub write: u64,
    pub failed: u64,
    pub wait_ns: WaitQuantiles,
}

/// A `locks.by_process` row: a traced process, or (`other: true`) every other waiter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRow {
    #[serde(flatten)]
    pub waits: Waits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tgid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<bool>,
}

/// `locks` when the lock programs ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockCounts {
    /// true (a trace JSON from before the key counted its locks all the same).
    #[serde(default = "yes")]
    pub available: bool,
    #[serde(flatten)]
    pub total: Waits,
    /// The start-up pass's and the anon_vma set's counters (`null`: a replay has none).
    pub anon_vmas_seeded: Option<u64>,
    pub set_full: Option<u64>,
    pub lost: Option<u64>,
    pub begins: u64,
    pub ends: u64,
    pub paired: u64,
    pub unpaired_begins: u64,
    pub unpaired_ends: u64,
    pub out_of_scope: u64,
    pub via_owner: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_hist: Option<Hist>,
    pub by_process: Vec<LockRow>,
}

fn yes() -> bool {
    true
}

/// `locks`: anon_vma root rwsem contention, or why it was not traced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Locks {
    Unavailable { available: bool, reason: String },
    Traced(Box<LockCounts>),
}

/// `by_cgroup` (`trace --by-cgroup`): a cgroup's traced processes and their counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupRow {
    pub path: String,
    pub id: u64,
    pub processes: u64,
    #[serde(flatten)]
    pub observed: KindFlows,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eager: Option<KindFlows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy: Option<KindFlows>,
}

/// `model.events` (`--model-events`): one event fed and the (proc, phase) it counted at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FedEvent {
    pub proc: usize,
    pub phase: Option<u32>,
    pub event: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotModelled {
    pub proc: usize,
    pub tgid: u32,
    pub why: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCounts {
    pub anon_vma: i64,
    pub anon_vma_chain: i64,
}

/// Live objects the seed gave the model (-p / --cgroup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededLive {
    pub eager: LiveCounts,
    pub lazy: LiveCounts,
}

/// `model` when trace fed it: what it covered and everything it could not use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelFed {
    pub fed: bool,
    /// `--model-events`: every event fed; `null` otherwise.
    pub events: Option<Vec<FedEvent>>,
    pub kernel_rules: String,
    pub complete: bool,
    pub incomplete: Vec<String>,
    pub processes_modelled: u64,
    pub not_modelled: Vec<u32>,
    pub not_modelled_why: Vec<NotModelled>,
    pub seeded: Vec<u32>,
    pub not_seeded: BTreeMap<u32, String>,
    pub seed_pass_us: Option<u64>,
    pub events_fed: u64,
    pub unmodelled_syscalls: BTreeMap<String, u64>,
    pub faults_not_placed: u64,
    pub prepares_outside_fault: u64,
    /// Absent in a trace JSON from before prepares were placed by the hook's VMA: carried
    /// to the report's `trace.model` as absent, not as a 0 nobody counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepares_placed_by_hook: Option<u64>,
    pub layout_mismatches: u64,
    pub out_of_order: u64,
    pub reordered: u64,
    pub prepare_race_spares: KindFlows,
    pub find_vma_errors: Vec<u32>,
    pub model_errors: u64,
    pub first_model_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeded_live: Option<SeededLive>,
    /// Why the knob sweep is not run, or how a seeded one starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knob_sweep: Option<String>,
    pub events_kept: u64,
    pub events_max: u64,
    pub events_dropped: u64,
    /// Where a trace JSON from before top-level `knobs` kept them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knobs: Option<BTreeMap<String, String>>,
}

/// `model`: what the model saw, or why it was not fed (command and -p scopes only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Model {
    NotFed { fed: bool, why: String },
    Fed(Box<ModelFed>),
}

/// `rules_that_matter`: the knob sweep, or why it failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RulesThatMatter {
    Sweep(Box<Sweep>),
    Error { error: String },
}

/// The whole `trace -j` / `replay -j` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceDoc {
    // What was traced, how, and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// `null`: the recording's header has no host name.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_unix_ms: Option<u64>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub pids: Vec<u32>,
    /// `--cgroup`: the directory whose members at start were traced.
    #[serde(default)]
    pub cgroup: Option<String>,
    #[serde(default)]
    pub command: Option<Command>,
    #[serde(default)]
    pub ended_by: String,
    pub elapsed_ms: u64,
    #[serde(default)]
    pub backend: BTreeMap<String, String>,
    #[serde(default)]
    pub backend_detail: Vec<BackendChoice>,
    #[serde(default)]
    pub tracepoints: Vec<String>,
    #[serde(default)]
    pub missing_tracepoints: Vec<MissingTracepoint>,
    #[serde(default)]
    pub kernel_stacks: bool,
    pub sizes: TraceSizes,
    // The slab's counts.
    pub observed: KindFlows,
    #[serde(default)]
    pub by_function: BTreeMap<String, KindFlows>,
    #[serde(default)]
    pub by_reason: BTreeMap<String, KindFlows>,
    #[serde(default)]
    pub phases: Vec<PhaseRow>,
    #[serde(default)]
    pub processes: Vec<ProcRow>,
    /// `null`: unknown (a recording cut short before its trailer).
    #[serde(default)]
    pub lost_events: Option<u64>,
    pub events: Events,
    #[serde(default)]
    pub launcher_frees: u64,
    #[serde(default)]
    pub live_objects: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_counts: Option<MapStats>,
    #[serde(default)]
    pub timeline: Vec<TimePoint>,
    // The ops and kernel events (function hooks, KSM/THP, rmap walks, lock waits).
    #[serde(default)]
    pub ops: Option<Ops>,
    #[serde(default)]
    pub kernel_events: Option<KernelEvents>,
    #[serde(default)]
    pub rmap: Option<Rmap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<Locks>,
    // The model fed with this trace (command and -p scopes), for the traced tree only.
    #[serde(default)]
    pub eager: Option<KindFlows>,
    #[serde(default)]
    pub lazy: Option<KindFlows>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Model>,
    #[serde(default)]
    pub lazy_rules: Option<LazyRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_rules_why: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knobs: Option<BTreeMap<String, String>>,
    /// Absent: not run for this output (text); `null`: not run (`model.knob_sweep` says why).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub rules_that_matter: Option<Option<RulesThatMatter>>,
    // Live-only and replay-only sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_stats: Option<BTreeMap<String, BpfProg>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_cgroup: Option<Vec<CgroupRow>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_cap: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `replay`: where its records came from (the report document's own type).
    pub recording: Option<Recording>,
}

/// Keys only `trace -j` writes.
pub fn is_trace(v: &Value) -> bool {
    ["observed", "by_function", "events"].iter().all(|k| v.get(k).is_some())
}

/// A trace's side: objects allocated during the trace (a traced command frees nearly all it
/// allocated by exit: the allocations are the figure), with the frees beside them.
fn side(f: &Flow, size: u64) -> Side {
    let n = f.alloc as i64;
    Side { objects: n, bytes: n * size as i64, allocs: Some(f.alloc), frees: Some(f.free) }
}

fn allocs(f: &KindFlows) -> ObjectCounts {
    ObjectCounts { anon_vma: f.anon_vma.alloc, anon_vma_chain: f.anon_vma_chain.alloc }
}

fn saved_kb(eager: Option<ObjectCounts>, lazy: Option<ObjectCounts>, sizes: ObjectCounts) -> f64 {
    let bytes = |p: ObjectCounts| (p.anon_vma * sizes.anon_vma + p.anon_vma_chain * sizes.anon_vma_chain) as f64;
    match (eager, lazy) {
        (Some(e), Some(l)) => (bytes(e) - bytes(l)) / 1024.0,
        _ => 0.0,
    }
}

/// A model column of a timeline point: live objects, never below zero.
fn live(n: Option<Net>) -> Result<Option<ObjectCounts>, String> {
    let Some(n) = n else { return Ok(None) };
    let count = |x: i64, k: &str| u64::try_from(x).map_err(|_| format!("`{k}` is not a count"));
    Ok(Some(ObjectCounts { anon_vma: count(n.anon_vma, "anon_vma")?, anon_vma_chain: count(n.anon_vma_chain, "anon_vma_chain")? }))
}

impl LockCounts {
    /// Every count of the section as `locks.KEY`, for the report's `rules`.
    fn rules(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let t = &self.total;
        [
            ("anon_vmas_seeded", self.anon_vmas_seeded),
            ("begins", Some(self.begins)),
            ("contentions", Some(t.contentions)),
            ("ends", Some(self.ends)),
            ("failed", Some(t.failed)),
            ("lost", self.lost),
            ("out_of_scope", Some(self.out_of_scope)),
            ("paired", Some(self.paired)),
            ("read", Some(t.read)),
            ("set_full", self.set_full),
            ("unpaired_begins", Some(self.unpaired_begins)),
            ("unpaired_ends", Some(self.unpaired_ends)),
            ("via_owner", Some(self.via_owner)),
            ("write", Some(t.write)),
        ]
        .into_iter()
        .filter_map(|(k, n)| Some((k, n?)))
    }
}

impl TraceDoc {
    /// As `trace -j` prints it: through `Value`, whose maps sort their keys, so the
    /// output is byte for byte what it was when the tracer built `Value`s.
    pub fn to_json(&self) -> serde_json::Result<Value> {
        serde_json::to_value(self)
    }

    /// The report document: the observed table, the model's eager/lazy sides when trace fed
    /// it (else `null`: "model not fed"), the timeline, anon_vma root rwsem waits,
    /// `--by-cgroup` rows, `--stats` and the recording a replay read. A key the trace did not
    /// write stays empty or `null`, never estimated.
    pub fn report(&self) -> Result<Doc, String> {
        let mut rules = BTreeMap::new();
        let mut notes = vec![];
        for (prefix, table) in [("function", &self.by_function), ("reason", &self.by_reason)] {
            for (name, c) in table {
                for (kind, f) in c.kinds() {
                    rules.insert(format!("{prefix}.{name}.{kind}.alloc"), f.alloc);
                    rules.insert(format!("{prefix}.{name}.{kind}.free"), f.free);
                }
            }
        }
        rules.insert("events.malformed".into(), self.events.malformed);
        rules.insert("events.stack_errors".into(), self.events.stack_errors);
        let locks = match &self.locks {
            Some(Locks::Traced(l)) if l.available => Some(l.as_ref()),
            _ => None,
        };
        if let Some(l) = locks {
            rules.extend(l.rules().map(|(k, n)| (format!("locks.{k}"), n)));
        } else if let Some(Locks::Unavailable { reason, .. }) = &self.locks {
            notes.push(format!("anon_vma root rwsem waits not traced: {reason}"));
        }
        let elapsed_ms = self.elapsed_ms;
        let start = self.start_unix_ms;
        let end = match start {
            Some(s) => Some(s.checked_add(elapsed_ms).ok_or("`start_unix_ms` + `elapsed_ms` is past the end of time")?),
            None => None,
        };
        if start.is_none() {
            notes.push("the trace JSON has no wall-clock start: timeline times are ms since the trace started".into());
        }
        let host = self.host.clone().unwrap_or_else(|| "unknown (not recorded)".into());
        let (av_size, avc_size) = (self.sizes.of("anon_vma"), self.sizes.of("anon_vma_chain"));
        let sizes = ObjectCounts { anon_vma: av_size.0, anon_vma_chain: avc_size.0 };
        let observed = self.observed.flows();
        let (eager, lazy) = (self.eager.as_ref().map(KindFlows::flows), self.lazy.as_ref().map(KindFlows::flows));
        if eager.is_none() && lazy.is_none() {
            notes.push("model not fed: observed slab allocations/frees during the trace; no eager/lazy model".into());
        }
        // Lock records have their own lost counter (ring buffer full for them too).
        let lock_lost = locks.and_then(|l| l.lost).unwrap_or(0);
        let lost_events = match self.lost_events {
            Some(n) => n + lock_lost,
            None => {
                notes.push("lost events unknown (recording cut short before its trailer): 0 here means unknown".into());
                lock_lost
            }
        };
        if self.recording.as_ref().is_some_and(|r| !r.complete) {
            notes.push("replayed from a recording cut short: counts end at its last complete chunk".into());
        }
        // A trace that fed the model carries its knob sweep (`lazyvma_model::sweep`).
        let rules_that_matter = match self.rules_that_matter.as_ref().and_then(Option::as_ref) {
            Some(RulesThatMatter::Sweep(s)) => Some(s.as_ref().clone()),
            Some(RulesThatMatter::Error { error }) => {
                notes.push(format!("knob sweep failed: {error}"));
                None
            }
            None => None,
        };
        if self.lazy_rules.is_none() && eager.is_some() {
            notes.push("lazy rule counts: not in this trace JSON (written by a lazyvma without them)".into());
        }
        let row = |kind: &str, (size, source): (u64, String)| {
            let pick = |f: &Flows| if kind == "anon_vma" { f.anon_vma } else { f.anon_vma_chain };
            ObjectRow {
                size: Some(size),
                size_source: Some(source),
                observed: Some(side(&pick(&observed), size)),
                eager: eager.as_ref().map(|f| side(&pick(f), size)),
                lazy: lazy.as_ref().map(|f| side(&pick(f), size)),
            }
        };
        let timeline = self
            .timeline
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let e = |what: String| format!("timeline[{n}]: {what}");
                Ok(Point {
                    host: host.clone(),
                    t_unix_ms: start.unwrap_or(0) + p.t_ms,
                    eager: live(p.eager_live).map_err(|w| e(format!("eager_live: {w}")))?,
                    lazy: live(p.lazy_live).map_err(|w| e(format!("lazy_live: {w}")))?,
                    observed: Some(p.observed_live),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let cgroups = self
            .by_cgroup
            .iter()
            .flatten()
            .map(|r| {
                let (eager, lazy) = (r.eager.as_ref().map(allocs), r.lazy.as_ref().map(allocs));
                Cgroup {
                    host: None,
                    id: r.id,
                    path: r.path.clone(),
                    processes: r.processes,
                    eager,
                    lazy,
                    saved_kb: saved_kb(eager, lazy, sizes),
                    observed: Some(r.observed.flows()),
                }
            })
            .collect();
        let mut histograms = Histograms::default();
        if let Some(h) = locks.and_then(|l| l.wait_hist.clone()) {
            histograms.series.insert(LOCK_WAIT.into(), h);
        }
        let knobs = self.knobs.as_ref().or(match &self.model {
            Some(Model::Fed(m)) => m.knobs.as_ref(),
            _ => None,
        });
        let trace = serde_json::json!({ "scope": self.scope, "ended_by": self.ended_by, "command": self.command, "model": self.model });
        Ok(Doc {
            schema: SCHEMA.into(),
            version: VERSION,
            source: if self.recording.is_some() { "replay" } else { "trace" }.into(),
            kernel: self.kernel.clone().unwrap_or_else(|| "unknown".into()),
            arch: self.arch.clone().unwrap_or_else(|| "unknown".into()),
            backend: self.backend.clone(),
            span: Span { start_unix_ms: start, end_unix_ms: end, elapsed_ms: elapsed_ms as f64 },
            objects: Objects { vm_area_struct: ObjectRow::default(), anon_vma_chain: row("anon_vma_chain", avc_size), anon_vma: row("anon_vma", av_size) },
            rules,
            rmap: BTreeMap::from([("walks".into(), self.rmap.as_ref().map(|r| r.walks)), ("lock_wait_events".into(), locks.map(|l| l.total.contentions))]),
            histograms,
            lost_events,
            knobs: knobs.cloned().unwrap_or_default(),
            timeline,
            processes: vec![],
            cgroups,
            hosts: vec![],
            notes,
            bpf_stats: self.bpf_stats.clone().unwrap_or_default(),
            recording: self.recording.clone(),
            trace: Some(trace),
            host,
            rules_that_matter,
            lazy_rules: self.lazy_rules.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A trace JSON read as `report` reads it, made a report document.
    fn convert(v: &Value) -> Result<Doc, String> {
        serde_json::from_value::<TraceDoc>(v.clone()).map_err(|e| e.to_string())?.report()
    }

    /// The smallest trace JSON `convert` takes, with the model's columns as given.
    fn trace(eager: Value, lazy: Value) -> Value {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        json!({
            "kernel": "6.18.44", "arch": "x86_64", "host": "h", "start_unix_ms": 1000, "elapsed_ms": 50,
            "sizes": { "anon_vma": 96, "anon_vma_chain": 64 },
            "observed": { "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) },
            "by_function": {}, "by_reason": {}, "events": { "malformed": 0, "stack_errors": 0 },
            "lost_events": null, "eager": eager, "lazy": lazy,
            "timeline": [{ "t_ms": 10, "observed_live": { "anon_vma": -1, "anon_vma_chain": 2 }, "eager_live": { "anon_vma": 3, "anon_vma_chain": 5 }, "lazy_live": null }],
            "by_cgroup": [{ "path": "/a", "id": 7, "processes": 2, "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12),
                            "eager": { "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) }, "lazy": { "anon_vma": af(2, 2), "anon_vma_chain": af(4, 4) } }],
        })
    }

    /// Today's `sizes`: bytes are the slab slot with its source, as a snapshot's rows say;
    /// `trace()` keeps an older trace JSON's bare object_size readable.
    #[test]
    fn sizes_are_slab_slots_with_their_source() {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        let mut t = trace(json!({ "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) }), Value::Null);
        t["sizes"] = serde_json::to_value(lazyvma_model::sizes::Sizes::spec_x86_64()).unwrap();
        let d: Doc = convert(&t).unwrap();
        let av = &d.objects.anon_vma;
        assert_eq!((av.size, av.observed.as_ref().map(|s| s.bytes)), (Some(104), Some(6 * 104)));
        assert_eq!(av.size_source.as_deref(), Some("spec §4.3 (x86_64 slab slot; no slab or BTF readable)"));
        assert_eq!(d.objects.anon_vma_chain.size, Some(64));
        t["sizes"]["anon_vma"] = json!({ "slab_size": 104 });
        // Neither shape: what today's lacks is said.
        assert_eq!(convert(&t).unwrap_err(), "`sizes`: missing field `object_size`");
    }

    #[test]
    fn model_columns_fill_the_eager_and_lazy_sides_when_fed() {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        let fed = json!({ "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) });
        let lazy = json!({ "anon_vma": af(3, 3), "anon_vma_chain": af(9, 9) });
        let d: Doc = convert(&trace(fed, lazy)).unwrap();
        assert_eq!(d.objects.anon_vma.eager, Some(Side { objects: 6, bytes: 576, allocs: Some(6), frees: Some(6) }));
        assert_eq!(d.objects.anon_vma_chain.lazy, Some(Side { objects: 9, bytes: 576, allocs: Some(9), frees: Some(9) }));
        assert!(!d.notes.iter().any(|n| n.starts_with("model not fed")), "{:?}", d.notes);
        // (6 − 2) × 96 + (12 − 4) × 64 = 896 bytes.
        assert_eq!((d.cgroups[0].id, d.cgroups[0].saved_kb), (7, 0.875));
        let p = &d.timeline[0];
        assert_eq!(
            (p.t_unix_ms, p.eager, p.lazy, p.observed),
            (1010, Some(ObjectCounts { anon_vma: 3, anon_vma_chain: 5 }), None, Some(Net { anon_vma: -1, anon_vma_chain: 2 }))
        );
        // A replay cut short: lost events unknown, said so rather than shown as a clean 0.
        assert!(d.notes.iter().any(|n| n.starts_with("lost events unknown")), "{:?}", d.notes);
    }

    #[test]
    fn lazy_rule_counts_pass_through_and_their_absence_is_said() {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        let fed = json!({ "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) });
        let d: Doc = convert(&trace(fed.clone(), fed.clone())).unwrap();
        assert!(d.lazy_rules.is_none());
        assert!(d.notes.iter().any(|n| n.starts_with("lazy rule counts: not in this trace JSON")), "{:?}", d.notes);
        let mut c = lazyvma_model::lazy::RuleCounts::default();
        c.fire(lazyvma_model::lazy::Rule::L2);
        let mut t = trace(fed.clone(), fed);
        t["lazy_rules"] = serde_json::to_value(crate::report::lazy_rules::from_counts(&c)).unwrap();
        let d: Doc = convert(&t).unwrap();
        assert_eq!(d.lazy_rules.as_ref().map(|r| (r["L2"].fired, r["L2"].status.as_str(), r["L1"].fired)), Some((1, "stated", 0)));
        t["lazy_rules"]["L2"]["fired"] = json!(-1);
        assert!(convert(&t).unwrap_err().starts_with("invalid value: integer `-1`"), "{:?}", convert(&t));
    }

    #[test]
    fn without_the_model_the_sides_are_null_and_said_so() {
        let d: Doc = convert(&trace(Value::Null, Value::Null)).unwrap();
        assert_eq!((d.objects.anon_vma.eager.clone(), d.objects.anon_vma.lazy.clone()), (None, None));
        assert_eq!(d.objects.anon_vma.observed.as_ref().map(|s| s.objects), Some(6));
        assert!(d.notes.iter().any(|n| n.starts_with("model not fed")), "{:?}", d.notes);
        assert!(d.lazy_rules.is_none() && !d.notes.iter().any(|n| n.starts_with("lazy rule counts")), "{:?}", d.notes);
        assert_eq!(d.source, "trace");
    }
}
