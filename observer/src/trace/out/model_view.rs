//! The model's part of `trace`'s report: eager and lazy counts next to the observed ones
//! (totals, per (process, phase), live rows) and what the model covered.
use crate::report::{
    lazy_rules::LazyRules,
    trace_doc::{FedEvent, KindFlows, LiveCounts, Model, ModelFed, NotModelled, PhaseRow, SeededLive},
};
use crate::trace::{
    counts::slab::{AllocFree, Sizes, SlabCounts},
    feed::Feed,
};

/// Put each (process, phase) row's eager and lazy counts next to its observed ones; rows
/// only the model has get zero observed counts, so nothing the model did is hidden.
pub fn add_to_phases(feed: Option<&Feed>, phases: &mut Vec<PhaseRow>) {
    let Some(f) = feed else { return };
    for (n, row) in f.rows.iter().enumerate() {
        let i = match phases.iter().position(|p| p.proc == row.proc && p.phase == row.phase) {
            Some(i) => i,
            None => {
                phases.push(PhaseRow { proc: row.proc, tgid: row.tgid, phase: row.phase, ..Default::default() });
                phases.len() - 1
            }
        };
        let p = &mut phases[i];
        p.model_order = Some(n);
        p.eager = Some((&row.eager).into());
        p.lazy = Some((&row.lazy).into());
        p.prepare_race_spares = (row.spares != SlabCounts::default()).then(|| (&row.spares).into());
        p.before_seed = (row.before_seed != SlabCounts::default()).then(|| (&row.before_seed).into());
        if let Some(why) = &row.not_modelled {
            p.not_modelled = Some(why.clone());
        }
    }
    flag_moved_teardowns(phases);
}

/// [+AV, -AV, +AVC, -AVC] of a phase row's counts.
fn four(c: &KindFlows) -> [i64; 4] {
    [c.anon_vma.alloc as i64, c.anon_vma.free as i64, c.anon_vma_chain.alloc as i64, c.anon_vma_chain.free as i64]
}

/// An mm's teardown runs in the task that drops its last reference: a process that read
/// /proc/PID/* of an exiting one (systemd does) may free that process's anon_vmas and
/// chains. The slab counts them at the freer, the model at the owner's exit. Where one
/// process's frees fall short of its model by exactly what another's exceed theirs (no
/// allocation differing in either), both are flagged with the move, never left looking
/// wrong or made to look exact.
fn flag_moved_teardowns(phases: &mut [PhaseRow]) {
    use std::collections::BTreeMap;
    // proc -> (tgid, observed, model, modelled)
    let mut procs: BTreeMap<usize, (u32, [i64; 4], [i64; 4], bool)> = BTreeMap::new();
    for p in phases.iter() {
        let e = procs.entry(p.proc).or_default();
        e.0 = p.tgid;
        let add = |to: &mut [i64; 4], x: [i64; 4]| to.iter_mut().zip(x).for_each(|(t, x)| *t += x);
        add(&mut e.1, four(&p.observed));
        if let Some(eager) = &p.eager {
            e.3 = true;
            for c in [Some(eager), p.prepare_race_spares.as_ref(), p.before_seed.as_ref()].into_iter().flatten() {
                add(&mut e.2, four(c));
            }
        }
    }
    // Frees only: (owner's shortfall) and (freer's excess), as [AV, AVC].
    let frees = |(_, o, m, _): &(u32, [i64; 4], [i64; 4], bool)| (o[0] == m[0] && o[2] == m[2]).then(|| [o[1] - m[1], o[3] - m[3]]);
    let short: Vec<(usize, u32, [i64; 2])> = procs
        .iter()
        .filter(|(_, e)| e.3)
        .filter_map(|(p, e)| frees(e).map(|d| (*p, e.0, d)))
        .filter(|(_, _, d)| d[0] <= 0 && d[1] <= 0 && *d != [0, 0])
        .collect();
    let mut taken = std::collections::BTreeSet::new();
    let mut why: BTreeMap<usize, String> = BTreeMap::new();
    for (owner, owner_tgid, d) in short {
        let want = [-d[0], -d[1]];
        let freer = procs.iter().find(|(p, e)| **p != owner && !taken.contains(*p) && frees(e) == Some(want));
        if let Some((freer, e)) = freer {
            taken.insert(*freer);
            let moved = format!("{} anon_vma / {} anon_vma_chain", want[0], want[1]);
            why.insert(owner, format!("teardown moved: {moved} of this process's mm freed by tgid {} (its last mmput)", e.0));
            why.insert(*freer, format!("teardown moved: freed {moved} of tgid {owner_tgid}'s mm (its last mmput)"));
        }
    }
    for p in phases.iter_mut() {
        let Some(w) = why.get(&p.proc) else { continue };
        let flag = match p.not_modelled.as_deref() {
            Some(old) if !old.is_empty() => format!("{old}; {w}"),
            _ => w.clone(),
        };
        p.not_modelled = Some(flag);
    }
}

/// `events`: also list every event fed, with the (proc, phase) it counted at.
pub fn doc(feed: Option<&Feed>, scope: &str, events: bool) -> Model {
    let Some(f) = feed else {
        return Model::NotFed { fed: false, why: format!("{scope} scope: processes running before the trace are not modelled") };
    };
    let c = &f.coverage;
    let listed =
        events.then(|| f.events.iter().zip(&f.fed_at).map(|(e, (proc, phase))| FedEvent { proc: *proc, phase: *phase, event: format!("{e:x?}") }).collect());
    let mut m = ModelFed {
        events: listed,
        fed: true,
        kernel_rules: f.kernel().name().to_string(),
        complete: c.incomplete.is_empty(),
        incomplete: c.incomplete.clone(),
        processes_modelled: c.modelled,
        not_modelled: c.not_modelled.clone(),
        // Why each is not: a row with observed counts and no model is flagged here.
        not_modelled_why: c.not_modelled_why.iter().map(|(proc, (tgid, why))| NotModelled { proc: *proc, tgid: *tgid, why: why.clone() }).collect(),
        // -p / --cgroup: processes seeded from the snapshot at the start, and why not others.
        seeded: c.seeded.clone(),
        not_seeded: c.not_seeded.clone(),
        seed_pass_us: c.seed_pass_us,
        events_fed: c.events_fed,
        unmodelled_syscalls: c.unmodelled.clone(),
        faults_not_placed: c.faults_not_placed,
        prepares_outside_fault: c.prepares_outside_fault,
        // Outside a fault, placed on the prepare hook's VMA (guest kernels with fentry/kprobes).
        prepares_placed_by_hook: Some(c.prepares_placed_by_hook),
        layout_mismatches: c.layout_mismatches,
        // Syscalls / prepares that came after a later one of their mm was applied (trace/feed/order.rs).
        out_of_order: c.out_of_order,
        reordered: f.reordered(),
        // Allocated and freed by threads that lost a prepare race: observed = eager + these.
        prepare_race_spares: (&f.spares).into(),
        find_vma_errors: c.find_vma_errors.clone(),
        model_errors: c.model_errors,
        first_model_error: c.first_error.clone(),
        // The events kept for the sweep and `--model-events`; past the cap, said, never silent.
        events_kept: f.events.len() as u64,
        events_max: f.events_max as u64,
        events_dropped: f.events_dropped,
        ..Default::default()
    };
    if !c.seeded.is_empty() {
        let b = f.seeded_live;
        m.seeded_live =
            Some(SeededLive { eager: LiveCounts { anon_vma: b[0], anon_vma_chain: b[1] }, lazy: LiveCounts { anon_vma: b[2], anon_vma_chain: b[3] } });
        m.knob_sweep = Some(
            "run on the seeded model: each knob value's run starts from its own seed of the snapshot (rules_that_matter.not_run: values the seed refuses)"
                .into(),
        );
    }
    if let Some(why) = sweep_not_run(f) {
        m.knob_sweep = Some(why);
    }
    Model::Fed(Box::new(m))
}

/// `lazy_rules` and, when the model was not fed, why (null, never a row of zeros).
pub fn lazy_rules(feed: Option<&Feed>, scope: &str) -> (Option<LazyRules>, Option<String>) {
    match feed {
        Some(f) => (Some(crate::report::lazy_rules::from_counts(f.lazy_rules())), None),
        None => (None, Some(format!("model not fed ({scope} scope: processes running before the trace are not modelled)"))),
    }
}

fn net(a: &AllocFree) -> i64 {
    a.alloc as i64 - a.free as i64
}

/// Live (eager AV, eager AVC, lazy AV, lazy AVC) in the model now: what the trace fed it,
/// over what it was seeded with.
pub fn live_now(f: &Feed) -> [i64; 4] {
    let b = f.seeded_live;
    [b[0] + net(&f.eager.anon_vma), b[1] + net(&f.eager.anon_vma_chain), b[2] + net(&f.lazy.anon_vma), b[3] + net(&f.lazy.anon_vma_chain)]
}

/// Bytes of live anon_vma + anon_vma_chain objects eager holds beyond lazy.
fn saved(f: &Feed, s: &Sizes) -> i64 {
    let l = live_now(f);
    (l[0] - l[2]) * s.anon_vma.slab_size as i64 + (l[1] - l[3]) * s.anon_vma_chain.slab_size as i64
}

pub const LIVE_HEAD: &str = "eager AV   AVC   lazy AV   AVC   saved B";

/// The model's live objects so far (traced tree), and what lazy saves of them.
pub fn live(feed: Option<&Feed>, s: &Sizes) -> String {
    let Some(f) = feed else { return "(not modelled)".into() };
    let l = live_now(f);
    format!("{:>8} {:>5} {:>9} {:>5} {:>9}", l[0], l[1], l[2], l[3], saved(f, s))
}

/// Why the knob sweep is not run, if so.
pub fn sweep_not_run(f: &Feed) -> Option<String> {
    if f.events_dropped > 0 {
        return Some(format!(
            "not run: {} model events past --model-events-max {} were not kept (the sweep needs every event)",
            f.events_dropped, f.events_max
        ));
    }
    // Seeded processes without the seed's input (cannot happen today; never a sweep from nothing).
    (!f.coverage.seeded.is_empty() && f.seed_start.is_none()).then(|| "not run: the seed's input was not kept".to_string())
}

#[cfg(test)]
mod moved_teardown_tests {
    use super::{KindFlows, PhaseRow};
    use crate::report::schema::Flow;

    fn row(proc: usize, obs: [u64; 4], eager: Option<[u64; 4]>) -> PhaseRow {
        let c = |v: [u64; 4]| KindFlows { anon_vma: Flow { alloc: v[0], free: v[1] }, anon_vma_chain: Flow { alloc: v[2], free: v[3] }, unclassified: None };
        PhaseRow { proc, tgid: proc as u32 + 1000, phase: None, observed: c(obs), eager: eager.map(c), ..Default::default() }
    }

    /// The userland's case: systemd (no model here) ran an exited process's last mmput.
    #[test]
    fn a_teardown_run_by_another_task_flags_both_and_nothing_else() {
        let mut phases = vec![
            row(1, [16, 14, 26, 42], Some([16, 30, 26, 68])),
            row(2, [0, 16, 0, 26], None),
            row(3, [5, 5, 9, 9], Some([5, 5, 9, 9])),
            row(4, [1, 0, 2, 0], Some([2, 0, 2, 0])),
        ];
        super::flag_moved_teardowns(&mut phases);
        assert!(phases[0].not_modelled.as_deref().unwrap().contains("freed by tgid 1002"));
        assert!(phases[1].not_modelled.as_deref().unwrap().contains("of tgid 1001's mm"));
        // Exactly what moved: the owner's shortfall (16 AV, 26 AVC), the freer's excess.
        assert_eq!(
            phases[0].not_modelled.as_deref(),
            Some("teardown moved: 16 anon_vma / 26 anon_vma_chain of this process's mm freed by tgid 1002 (its last mmput)")
        );
        assert_eq!(phases[1].not_modelled.as_deref(), Some("teardown moved: freed 16 anon_vma / 26 anon_vma_chain of tgid 1001's mm (its last mmput)"));
        assert!(phases[2].not_modelled.is_none() && phases[3].not_modelled.is_none());
    }
}
