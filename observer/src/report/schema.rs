//! The one versioned report document (`docs/report-schema.md`) that snapshot, trace (via
//! [`super::trace_doc`]), replay and merge produce and `lazyvma report` renders.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA: &str = "lazyvma-report";
/// Bumped on any change a version-1 reader would misread; readers refuse newer versions.
pub const VERSION: u64 = 1;

/// Objects and their bytes on one side of the table: held at one instant (snapshot), or
/// allocated over the span (trace, which also gives `allocs`/`frees`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub objects: i64,
    pub bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frees: Option<u64>,
}

/// One object kind. `null` sides were not measured or not modelled by the source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectRow {
    /// Bytes per object (slab slot size where readable); `null` in a fleet whose hosts differ.
    pub size: Option<u64>,
    #[serde(default)]
    pub size_source: Option<String>,
    /// What the unpatched kernel showed (snapshot: held now; trace: allocated/freed).
    pub observed: Option<Side>,
    /// Today's kernel (EAGER) for the same workload.
    pub eager: Option<Side>,
    /// Under ANON_VMA_LAZY with `knobs`.
    pub lazy: Option<Side>,
}

/// In the cover letter's row order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Objects {
    pub vm_area_struct: ObjectRow,
    pub anon_vma_chain: ObjectRow,
    pub anon_vma: ObjectRow,
}

impl Objects {
    pub fn rows(&self) -> [(&'static str, &ObjectRow); 3] {
        [("vm_area_struct", &self.vm_area_struct), ("anon_vma_chain", &self.anon_vma_chain), ("anon_vma", &self.anon_vma)]
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Wall clock, ms since the Unix epoch; `null` when the source did not record it.
    pub start_unix_ms: Option<u64>,
    pub end_unix_ms: Option<u64>,
    pub elapsed_ms: f64,
}

/// Every histogram of every report is built with these bounds, so any two merge exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub low: u64,
    pub high: u64,
    pub sigfig: u8,
}

/// The fleet-wide contract: 1 ns .. 60 s at 3 significant figures.
pub const CONTRACT: Contract = Contract { low: 1, high: 60_000_000_000, sigfig: 3 };
pub const ENCODING: &str = "hdrhistogram-v2-deflate-base64";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// `ns` for latencies; `count` for small integers (chain lengths).
    pub unit: String,
    /// Samples recorded (also inside `data`; here for readers without an HdrHistogram decoder).
    pub count: u64,
    pub encoding: String,
    pub data: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    pub contract: Contract,
    #[serde(default)]
    pub series: BTreeMap<String, Hist>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms { contract: CONTRACT, series: BTreeMap::new() }
    }
}

/// anon_vma / anon_vma_chain object counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCounts {
    pub anon_vma: u64,
    pub anon_vma_chain: u64,
}

/// Live objects on the unpatched kernel, counted from a trace's start: allocations − frees,
/// so negative when more objects from before the trace were freed than were allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net {
    pub anon_vma: i64,
    pub anon_vma_chain: i64,
}

/// Allocations and frees of one kind during a trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub alloc: u64,
    pub free: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flows {
    pub anon_vma: Flow,
    pub anon_vma_chain: Flow,
}

/// Live objects at one instant (a snapshot is one point; a trace one per live interval;
/// several reports make a series).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub host: String,
    pub t_unix_ms: u64,
    /// `null`: not modelled (a trace whose model was not fed).
    pub eager: Option<ObjectCounts>,
    pub lazy: Option<ObjectCounts>,
    /// A trace's observed live objects (allocated − freed since its start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Net>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub pid: u32,
    pub comm: String,
    pub eager: ObjectCounts,
    pub lazy: Option<ObjectCounts>,
    /// (eager − lazy) bytes / 1024 with the host's sizes.
    pub saved_kb: f64,
}

/// One cgroup v2 (or `other`: everything past the cap folded together).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cgroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The cgroup v2 id (its kernfs inode, what `bpf_get_current_cgroup_id` returns); 0 for `other`.
    pub id: u64,
    pub path: String,
    pub processes: u64,
    /// `null`: not modelled (a trace whose model was not fed).
    pub eager: Option<ObjectCounts>,
    pub lazy: Option<ObjectCounts>,
    pub saved_kb: f64,
    /// `trace --by-cgroup`: what its processes allocated and freed during the trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Flows>,
}

/// `trace --stats`: one BPF program's runs and mean run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BpfProg {
    pub runs: u64,
    pub mean_ns: u64,
}

/// Where a replayed report's records came from (`lazyvma replay RECORDING`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub path: String,
    pub format_version: String,
    pub bytes: u64,
    pub chunks: u64,
    pub records: u64,
    /// false: cut short (no trailer): the end reason and lost events are unknown.
    pub complete: bool,
    pub lost_bytes: u64,
}

/// One input of a merge: what that host's report said, in brief.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    pub host: String,
    pub file: String,
    pub source: String,
    pub kernel: String,
    pub arch: String,
    pub backend: BTreeMap<String, String>,
    pub span: Span,
    pub objects: Objects,
    pub lost_events: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    pub schema: String,
    pub version: u64,
    /// `snapshot`, `trace`, `replay` or `merge`.
    pub source: String,
    pub host: String,
    pub kernel: String,
    pub arch: String,
    /// Hook → backend (fentry, kprobe, tracepoint, tracepoint-only, iter/task_vma).
    pub backend: BTreeMap<String, String>,
    pub span: Span,
    pub objects: Objects,
    /// Counters of which rule fired, `group.name` → count; merge sums them.
    #[serde(default)]
    pub rules: BTreeMap<String, u64>,
    /// rmap facts, `null` where this source cannot measure them.
    #[serde(default)]
    pub rmap: BTreeMap<String, Option<u64>>,
    #[serde(default)]
    pub histograms: Histograms,
    pub lost_events: u64,
    /// Lazy-model knob → value; empty when the source ran no lazy model.
    #[serde(default)]
    pub knobs: BTreeMap<String, String>,
    #[serde(default)]
    pub timeline: Vec<Point>,
    #[serde(default)]
    pub processes: Vec<Process>,
    #[serde(default)]
    pub cgroups: Vec<Cgroup>,
    /// A merge's inputs, one row each; empty otherwise.
    #[serde(default)]
    pub hosts: Vec<HostRow>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Issue 5: lazy counts under every value of every knob, and what lazy VMAs went
    /// through before their first share. Absent when the source fed the model no events
    /// (optional and additive: still version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_that_matter: Option<lazyvma_model::sweep::Sweep>,
    /// How often each lazy rule (spec §3.2) fired on the events the trace fed the model,
    /// with its tag (`stated` / `inferred` / `open`). Absent when the model was not fed
    /// (optional and additive: still version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_rules: Option<super::lazy_rules::LazyRules>,
    /// `trace --stats`: BPF program → cost; empty when not measured (and in a merge).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bpf_stats: BTreeMap<String, BpfProg>,
    /// `source: replay`: the recording read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<Recording>,
    /// `source: trace | replay`: what was traced and how it ended, and the model's coverage
    /// (`trace -j`'s scope, ended_by, command, model), as the trace reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<serde_json::Value>,
}

impl Doc {
    /// What the object counts mean: the source, or for a merge the one source of its inputs.
    pub fn kind(&self) -> &str {
        match (self.source.as_str(), self.hosts.first()) {
            ("merge", Some(h)) if h.source == "replay" => "trace",
            ("merge", Some(h)) => &h.source,
            // A replay's counts are its trace's.
            ("replay", _) => "trace",
            (s, _) => s,
        }
    }
}
