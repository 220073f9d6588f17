//! The OpenMetrics families `lazyvma serve` exposes, in base units. Trace counters are
//! updated lock-free as events arrive; the snapshot gauges change together under `pass`,
//! which the encoder also takes, so one exposition never mixes two snapshot generations.
use crate::snapshot::Sizes;
use crate::trace::counts::slab::Kind;
use lazyvma_model::snapshot::LiveObjects;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};
use std::sync::{atomic::AtomicU64, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlabLabels {
    pub function: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    object: &'static str,
    model: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabels {
    format: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    lazy_state: &'static str,
}

/// One `(allocations, frees)` pair of families per object kind.
#[derive(Clone, Default)]
struct SlabFamilies {
    alloc: Family<SlabLabels, Counter>,
    free: Family<SlabLabels, Counter>,
}

/// Counters of the ring buffer's own accounting.
#[derive(Clone, Default)]
pub struct EventCounters {
    pub sent: Counter,
    pub received: Counter,
    pub lost: Counter,
    pub malformed: Counter,
    pub stack_errors: Counter,
}

pub struct Metrics {
    registry: Registry,
    /// Held while the snapshot gauges change and while encoding.
    pass: Mutex<()>,
    anon_vma: SlabFamilies,
    anon_vma_chain: SlabFamilies,
    unclassified: SlabFamilies,
    pub events: EventCounters,
    objects: Family<ObjectLabels, Gauge>,
    bytes: Family<ObjectLabels, Gauge>,
    vmas: Family<StateLabels, Gauge>,
    truncated_vmas: Gauge,
    incomplete_processes: Gauge,
    unseen_vmas: Gauge,
    generation: Gauge,
    scope_processes: Gauge,
    pass_time: Gauge<f64, AtomicU64>,
    pass_seconds: Histogram,
    pub pass_failures: Counter,
    scrapes: Family<FormatLabels, Counter>,
}

/// Snapshot passes take ~0.15-0.2 s on an idle 2-core host; 5 ms .. ~10 s.
const PASS_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

const STATES: [&str; 4] = ["none", "lazy", "tree", "tree_parent"];

/// What one snapshot pass sets, already restricted to the scope.
pub struct Gauges {
    pub eager: LiveObjects,
    pub lazy: LiveObjects,
    /// VMAs per lazy state: none, lazy, tree, tree_parent.
    pub states: [u64; 4],
    pub truncated_vmas: u64,
    /// Processes the pass walked in part (`iter/task` only), and their VMAs it did not see.
    pub incomplete_processes: u64,
    pub unseen_vmas: u64,
    /// Processes of the scope in the pass (the whole system: every one seen).
    pub processes: u64,
}

impl Metrics {
    /// `info`: the build-info labels (version, kernel, arch, backend_<hook>...); `scope`:
    /// the `lazyvma_scope` labels (kind, cgroup, pids).
    pub fn new(info: Vec<(String, String)>, scope: Vec<(String, String)>) -> Metrics {
        let mut r = Registry::with_prefix("lazyvma");
        let m = Metrics {
            registry: Registry::default(),
            pass: Mutex::new(()),
            anon_vma: SlabFamilies::default(),
            anon_vma_chain: SlabFamilies::default(),
            unclassified: SlabFamilies::default(),
            events: EventCounters::default(),
            objects: Family::default(),
            bytes: Family::default(),
            vmas: Family::default(),
            truncated_vmas: Gauge::default(),
            incomplete_processes: Gauge::default(),
            unseen_vmas: Gauge::default(),
            generation: Gauge::default(),
            scope_processes: Gauge::default(),
            pass_time: Gauge::default(),
            pass_seconds: Histogram::new(PASS_BUCKETS),
            pass_failures: Counter::default(),
            scrapes: Family::default(),
        };
        // A gauge at 1, not an OpenMetrics `info`: promtool's text-format lint rejects that type.
        let build: Family<Vec<(String, String)>, Gauge> = Family::default();
        build.get_or_create(&info).set(1);
        r.register("build_info", "Version, kernel, arch and the backend of each hook; always 1", build);
        let sc: Family<Vec<(String, String)>, Gauge> = Family::default();
        sc.get_or_create(&scope).set(1);
        r.register("scope", "What the counters and object gauges cover: kind (system, pids, cgroup), the cgroup and pids given; always 1", sc);
        r.register(
            "scope_processes",
            "Processes of the scope in the last snapshot pass (members at start and their descendants, alive)",
            m.scope_processes.clone(),
        );
        let kinds = [("anon_vma", &m.anon_vma), ("anon_vma_chain", &m.anon_vma_chain), ("unclassified_slab", &m.unclassified)];
        for (name, f) in kinds {
            let what = if name == "unclassified_slab" {
                "slab objects of an anon_vma function whose kind is unknown (neither size, or freed unseen on an error path)"
            } else {
                name
            };
            r.register(format!("{name}_allocations"), format!("Observed {what} allocations, by allocating function and reason"), f.alloc.clone());
            r.register(format!("{name}_frees"), format!("Observed {what} frees, by freeing function and reason"), f.free.clone());
        }
        let e = &m.events;
        r.register("events_sent", "Records the BPF programs wrote to the ring buffer", e.sent.clone());
        r.register("events_received", "Records read from the ring buffer", e.received.clone());
        r.register("events_lost", "Records dropped because the ring buffer was full: counters are short by up to this many", e.lost.clone());
        r.register("events_malformed", "Records of a kind or function this build does not know", e.malformed.clone());
        r.register("stack_errors", "bpf_get_stack failures (the reason then falls back to the function's)", e.stack_errors.clone());
        r.register("objects", "Objects held now by the scope (eager: the kernel; lazy: ANON_VMA_LAZY's estimate for the same topology)", m.objects.clone());
        r.register_with_unit("object", "Slab bytes of `lazyvma_objects` (objects times the cache's slab slot size)", Unit::Bytes, m.bytes.clone());
        r.register("vmas", "VMAs of the last snapshot by the state ANON_VMA_LAZY would give them", m.vmas.clone());
        r.register(
            "snapshot_truncated_vmas",
            "VMAs of the last snapshot whose chain walk was cut short (their chain entries partly unseen)",
            m.truncated_vmas.clone(),
        );
        // Before 5.12 (no iter/task_vma) an iter/task walk fits ~200-330 VMAs per process.
        r.register("snapshot_incomplete_processes", "Processes of the last snapshot pass whose VMA list was walked only in part (the iter/task pass of kernels without iter/task_vma, before 5.12: a bounded walk and 32 KiB of records per process); the objects of their unseen VMAs are missing from lazyvma_objects and lazyvma_vmas, which then read low for both models. Always 0 where iter/task_vma exists", m.incomplete_processes.clone());
        r.register(
            "snapshot_unseen_vmas",
            "VMAs of lazyvma_snapshot_incomplete_processes the pass did not see (mm->map_count minus the VMAs walked): how much of the estimate is missing",
            m.unseen_vmas.clone(),
        );
        r.register("snapshot_generation", "Number of the snapshot pass the object gauges come from (1 = first)", m.generation.clone());
        r.register_with_unit("snapshot_timestamp", "Unix time the last snapshot pass ended", Unit::Seconds, m.pass_time.clone());
        r.register_with_unit(
            "snapshot_duration",
            "Wall time of one snapshot pass (BTF, BPF load, iterate, estimate, slab sizes)",
            Unit::Seconds,
            m.pass_seconds.clone(),
        );
        r.register("snapshot_failures", "Snapshot passes that failed (the gauges keep the last good pass)", m.pass_failures.clone());
        r.register("scrapes", "Requests for /metrics by exposition format (openmetrics or text 0.0.4), this one included", m.scrapes.clone());
        Metrics { registry: r, ..m }
    }

    pub fn count_slab(&self, kind: Kind, alloc: bool, function: &'static str, reason: String) {
        self.count_slab_n(kind, alloc, function, reason, 1);
    }

    pub fn count_slab_n(&self, kind: Kind, alloc: bool, function: &'static str, reason: String, n: u64) {
        let f = match kind {
            Kind::AnonVma => &self.anon_vma,
            Kind::AnonVmaChain => &self.anon_vma_chain,
            Kind::Unclassified => &self.unclassified,
        };
        let fam = if alloc { &f.alloc } else { &f.free };
        fam.get_or_create(&SlabLabels { function, reason }).inc_by(n);
    }

    /// Sets every snapshot gauge from one pass, as one step for the encoder.
    pub fn set_snapshot(&self, e: &Gauges, sizes: &Sizes, generation: i64, seconds: f64, unix_secs: f64) {
        let _g = self.pass.lock().unwrap_or_else(|e| e.into_inner());
        let size = [("anon_vma", sizes.anon_vma.slab_size), ("anon_vma_chain", sizes.anon_vma_chain.slab_size)];
        for (model, c) in [("eager", e.eager), ("lazy", e.lazy)] {
            for ((object, bytes), n) in size.into_iter().zip([c.anon_vma, c.anon_vma_chain]) {
                let l = ObjectLabels { object, model };
                self.objects.get_or_create(&l).set(n as i64);
                self.bytes.get_or_create(&l).set((n * bytes) as i64);
            }
        }
        for (state, n) in STATES.into_iter().zip(e.states) {
            self.vmas.get_or_create(&StateLabels { lazy_state: state }).set(n as i64);
        }
        self.truncated_vmas.set(e.truncated_vmas as i64);
        self.incomplete_processes.set(e.incomplete_processes as i64);
        self.unseen_vmas.set(e.unseen_vmas as i64);
        self.scope_processes.set(e.processes as i64);
        self.pass_time.set(unix_secs);
        self.pass_seconds.observe(seconds);
        self.generation.set(generation);
    }

    pub fn scraped(&self, openmetrics: bool) {
        self.scrapes.get_or_create(&FormatLabels { format: if openmetrics { "openmetrics" } else { "text" } }).inc();
    }

    /// The OpenMetrics exposition, `# EOF` included.
    pub fn encode(&self) -> String {
        let _g = self.pass.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(16 << 10);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing into a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label values come from the kernel (release, symbols of a reason) and from a cgroup's
    /// name, which a delegated user chooses: `\`, `"` and newline are escaped as both
    /// exposition formats require (prometheus-client's label encoder), so no value can end
    /// its label, forge a sample or end the exposition. Other characters are valid as they are.
    #[test]
    fn hostile_label_values_cannot_forge_a_sample() {
        let evil = "a\"} 1\nlazyvma_forged 2\n# EOF\\";
        let m = Metrics::new(vec![("kernel".into(), evil.into())], labels_of(evil));
        m.count_slab(Kind::AnonVma, true, "anon_vma_fork", evil.into());
        let want_value = r#"a\"} 1\nlazyvma_forged 2\n# EOF\\"#;
        let om = m.encode();
        for line in [
            format!("lazyvma_build_info{{kernel=\"{want_value}\"}} 1"),
            format!("lazyvma_scope{{kind=\"cgroup\",cgroup=\"{want_value}\"}} 1"),
            format!("lazyvma_anon_vma_allocations_total{{function=\"anon_vma_fork\",reason=\"{want_value}\"}} 1"),
        ] {
            assert!(om.lines().any(|l| l == line), "{line} not in:\n{om}");
            assert!(super::super::text::from_openmetrics(&om).lines().any(|l| l == line), "text format");
        }
        assert!(!om.lines().any(|l| l.starts_with("lazyvma_forged")) && om.lines().filter(|l| *l == "# EOF").count() == 1, "{om}");
    }

    /// 5.10's walk limit, as one pass sets it: both gauges move with the pass's other gauges.
    #[test]
    fn incomplete_processes_are_exposed() {
        let m = Metrics::new(vec![], vec![]);
        let size = |slab_size| lazyvma_model::sizes::Size { object_size: slab_size, slab_size, source: String::new() };
        let sizes = Sizes { anon_vma: size(88), anon_vma_chain: size(64), vm_area_struct: size(200) };
        let g = Gauges {
            eager: LiveObjects::default(),
            lazy: LiveObjects::default(),
            states: [0; 4],
            truncated_vmas: 0,
            incomplete_processes: 1,
            unseen_vmas: 1801,
            processes: 3,
        };
        m.set_snapshot(&g, &sizes, 1, 0.1, 0.0);
        let om = m.encode();
        for line in ["lazyvma_snapshot_incomplete_processes 1", "lazyvma_snapshot_unseen_vmas 1801"] {
            assert!(om.lines().any(|l| l == line), "{line} not in:\n{om}");
        }
    }

    fn labels_of(cgroup: &str) -> Vec<(String, String)> {
        super::super::scope::labels(Some(std::path::Path::new(cgroup)), &[])
    }
}
