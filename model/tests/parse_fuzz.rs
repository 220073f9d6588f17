//! Random scenario text never panics the parser or the run, and every error names the
//! file and a line that exists.

use lazyvma_model::scenario::{parse, run, verify};
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "process",
    "mmap",
    "brk",
    "write",
    "read",
    "thp",
    "fork",
    "exit",
    "exec",
    "stack",
    "mprotect",
    "munmap",
    "mremap",
    "dontunmap",
    "madvise",
    "mergeable",
    "unmergeable",
    "dontfork",
    "dofork",
    "wipeonfork",
    "keeponfork",
    "guard_install",
    "ksm",
    "merge",
    "cleanup",
    "collapse",
    "rmap",
    "reclaim",
    "migrate",
    "unmap",
    "phase",
    "p1",
    "kernel",
    "6.1",
    "6.18",
    "5.19",
    "knob",
    "split_upgrades=true",
    "fork_of_tree_parent=share",
    "nope=1",
    "expect",
    "eager",
    "lazy",
    "lazy[split_upgrades=true]",
    "eager[kernel=6.1]",
    "lazy[",
    "step",
    "phase",
    "total",
    "live",
    "peak",
    "rules",
    "L1=0",
    "av=+0/-0",
    "avc=1",
    "vma=+1/-",
    "walks=1",
    "r",
    "rw",
    "rwx",
    "none",
    "shared",
    "pgoff",
    "1",
    "2",
    "3",
    "0",
    "4",
    "0x100000000",
    "0x100001000",
    "0x100004000",
    "0x1001",
    "0xfffffffffffff000",
    "18446744073709551615",
    "-1",
    "1_0",
    "#",
    "=",
    "[]",
    "é",
    "\u{0}",
];

/// Well-formed events on a few pids and addresses, so runs get past the first event.
fn event_line() -> impl Strategy<Value = String> {
    let pid = 1..4u32;
    let addr = (0..8u64).prop_map(|k| format!("{:#x}", 0x1_0000_0000u64 + k * 0x1000));
    let pages = 1..5u64;
    prop_oneof![
        (pid.clone(), addr.clone(), pages.clone(), prop::sample::select(&["rw", "r", "rwx", "rw mergeable", "rw dontfork", "rw wipeonfork"][..]))
            .prop_map(|(p, a, n, f)| format!("mmap {p} {a} {n} {f}")),
        (prop::sample::select(&["write", "read", "thp", "collapse"][..]), pid.clone(), addr.clone()).prop_map(|(v, p, a)| format!("{v} {p} {a}")),
        (pid.clone(), 4..7u32).prop_map(|(p, c)| format!("fork {p} {c}")),
        pid.clone().prop_map(|p| format!("exit {p}")),
        (pid.clone(), addr.clone(), pages.clone(), prop::sample::select(&["r", "rw"][..])).prop_map(|(p, a, n, r)| format!("mprotect {p} {a} {n} {r}")),
        (pid.clone(), addr.clone(), pages.clone()).prop_map(|(p, a, n)| format!("munmap {p} {a} {n}")),
        (pid.clone(), addr.clone(), 1..3u64, addr.clone(), any::<bool>())
            .prop_map(|(p, a, n, b, d)| format!("mremap {p} {a} {n} {b}{}", if d { " dontunmap" } else { "" })),
        (pid.clone(), addr.clone(), pages, prop::sample::select(&["mergeable", "unmergeable", "dontfork", "wipeonfork", "guard_install"][..]))
            .prop_map(|(p, a, n, v)| format!("madvise {p} {a} {n} {v}")),
        (pid.clone(), addr.clone()).prop_map(|(p, a)| format!("ksm merge {p} {a} 2")),
        Just("ksm cleanup".to_string()),
        (pid.clone(), addr).prop_map(|(p, a)| format!("rmap {p} {a} reclaim")),
        pid.prop_map(|p| format!("exec {p} stack 0x7000000000")),
        Just("expect lazy[split_upgrades=true] live av=0".to_string()),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(prop::sample::select(WORDS), 1..7).prop_map(|w| w.join(" ")),
        8 => event_line(),
        1 => "\\PC{0,40}",
        1 => Just(String::new()),
    ]
}

/// `file:N: …` with N in 1..=max.
fn names_a_line(msg: &str, max: usize) -> bool {
    let Some(rest) = msg.strip_prefix("fuzz.lzs:") else { return false };
    let n: Option<usize> = rest.split(':').next().and_then(|n| n.parse().ok());
    n.is_some_and(|n| (1..=max).contains(&n))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_lines_never_panic(lines in prop::collection::vec(line(), 0..25)) {
        let text = format!("process 1\nprocess 2\nprocess 3\n{}", lines.join("\n"));
        let max = text.lines().count().max(1);
        match parse("fuzz.lzs", &text) {
            Err(e) => prop_assert!(names_a_line(&e.to_string(), max), "{e}\n---\n{text}"),
            Ok(sc) => {
                if let Err(e) = run(&sc, None, &[]) {
                    prop_assert!(names_a_line(&e.to_string(), max), "{e}\n---\n{text}");
                }
                if let Err(e) = verify(&sc) {
                    prop_assert!(names_a_line(&e.to_string(), max), "{e}\n---\n{text}");
                }
            }
        }
    }
}
