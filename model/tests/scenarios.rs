//! Every shipped scenario (spec §5 A..E and the supplementary measured cases) meets the
//! exact counts written in its `expect` lines, and keeps spec §0's invariants throughout.

use lazyvma_model::knobs::Knobs;
use lazyvma_model::pair::Pair;
use lazyvma_model::scenario::{parse, verify, Item};
use std::path::PathBuf;

fn files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut v: Vec<_> =
        std::fs::read_dir(&dir).expect("model/scenarios").map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "lzs")).collect();
    v.sort();
    v
}

#[test]
fn every_expectation_holds() {
    let files = files();
    // Spec §5 A..E, the measured supplementary cases, and the rules §1/§3 name that §5 does
    // not reach (docs/scenarios.md has the table spec case → file).
    for want in [
        "a-touch-exit",
        "b-fork-child-exits",
        "b-child-writes",
        "c-fork-exec",
        "d-fork-chain",
        "e-mprotect-split",
        "e-mprotect-split-forked",
        "adjacent-reuse",
        "mremap-move",
        "munmap",
        "read-only",
        "fork-untouched",
        "reuse",
        "ksm",
        "rmap-walks",
        "merge-6.1-vs-6.18",
        "mremap-partial",
        "fill-hole-merge",
        "reuse-degree",
        "lazy-rules",
        "lazy-live-above-eager",
        "vfork",
    ] {
        assert!(files.iter().any(|f| f.file_stem().is_some_and(|s| s == want)), "model/scenarios/{want}.lzs missing");
    }
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let sc = parse(&f.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
        let checks = verify(&sc).unwrap_or_else(|e| panic!("{e}"));
        assert!(!checks.is_empty(), "{}: no expect lines", f.display());
        for c in checks {
            if let Some(why) = c.failure {
                failures.push(format!("{}:{}: `{}`: {why}", f.display(), c.line, c.text));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn invariants_hold_after_every_event() {
    for f in files() {
        let sc = parse(&f.display().to_string(), &std::fs::read_to_string(&f).unwrap()).unwrap();
        for knobs in [Knobs::default(), {
            let mut k = Knobs::default();
            k.set("fork_of_tree_parent=share").unwrap();
            k
        }] {
            let mut pair = Pair::new(sc.kernel, knobs);
            for l in &sc.lines {
                if let Item::Event(ev) = &l.item {
                    pair.apply(ev).unwrap();
                    for m in [pair.eager(), pair.lazy()] {
                        if let Err(e) = m.check_invariants() {
                            panic!("{}:{}: {} model: {e}", f.display(), l.line, if m.is_lazy() { "lazy" } else { "eager" });
                        }
                    }
                }
            }
        }
    }
}
