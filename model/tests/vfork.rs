//! `vfork PARENT CHILD`: the child's events act on its parent's mm until it execs (then it
//! has its own, as trace's feed models a vfork child from its exec) or exits (nothing).
use lazyvma_model::event::{Event, FaultKind};
use lazyvma_model::scenario::{parse, run, Item};

fn items(text: &str) -> Vec<(String, Item)> {
    parse("t.lzs", text).unwrap().lines.into_iter().map(|l| (l.text, l.item)).collect()
}

fn error(text: &str) -> String {
    parse("t.lzs", text).unwrap_err().to_string()
}

#[test]
fn a_vfork_child_acts_on_its_parents_mm_until_it_execs() {
    let got = items("process 1\nmmap 1 0x1000 1\nvfork 1 2\nwrite 2 0x1000\nvfork 2 3\nexit 3\nexec 2\nwrite 2 0x5000\nexit 2");
    let want = [
        ("process 1", Item::Event(Event::Spawn { pid: 1 })),
        ("mmap 1 0x1000 1", Item::Event(Event::Map { pid: 1, start: 0x1000, pages: 1, flags: 3 })),
        ("vfork 1 2", Item::SharesMm { child: 2, owner: 1 }),
        ("write 2 0x1000", Item::Event(Event::Fault { pid: 1, addr: 0x1000, kind: FaultKind::Write })),
        // A vfork of a vfork child shares the same mm.
        ("vfork 2 3", Item::SharesMm { child: 3, owner: 1 }),
        ("exit 3", Item::SharesMm { child: 3, owner: 1 }),
        ("process 2 (the vfork child's own mm, at its exec)", Item::Event(Event::Spawn { pid: 2 })),
        ("exec 2", Item::Event(Event::Exec { pid: 2, stack: None })),
        ("write 2 0x5000", Item::Event(Event::Fault { pid: 2, addr: 0x5000, kind: FaultKind::Write })),
        ("exit 2", Item::Event(Event::Exit { pid: 2 })),
    ];
    assert_eq!(got, want.map(|(t, i)| (t.to_string(), i)));
}

#[test]
fn vfork_allocates_nothing_and_its_steps_are_zeros() {
    let sc = parse("t.lzs", "process 1\nmmap 1 0x1000 1\nwrite 1 0x1000\nvfork 1 2\nexit 2\nexpect eager step av=+0/-0 avc=+0/-0").unwrap();
    let r = run(&sc, None, &[]).unwrap();
    assert!(r.checks.iter().all(|c| c.failure.is_none()), "{:?}", r.checks);
    let steps: Vec<(&str, u64, u64)> = r.steps.iter().map(|s| (s.text.as_str(), s.eager.anon_vma.alloc, s.lazy.anon_vma_chain.alloc)).collect();
    assert_eq!(steps[3..], [("vfork 1 2", 0, 0), ("exit 2", 0, 0)]);
}

#[test]
fn impossible_vforks_are_errors_with_the_line() {
    assert_eq!(error("process 1\nvfork 5 2"), "t.lzs:2: vfork of 5, which is not a process (`process 5` or a fork first)");
    assert_eq!(error("process 1\nprocess 2\nvfork 1 2"), "t.lzs:3: pid 2 is in use: a process");
    assert_eq!(error("process 1\nvfork 1 2\nfork 1 2"), "t.lzs:3: pid 2 is in use: a vfork child sharing 1's mm");
    assert_eq!(error("process 1\nvfork 1 2\nexit 1"), "t.lzs:3: 1's mm is shared by its vfork child 2: `exec 2` or `exit 2` first");
    assert_eq!(error("process 1\nvfork 1"), "t.lzs:2: expected the child pid: `vfork PARENT CHILD`");
    assert_eq!(error("process 1\nvfork 1 2 3"), "t.lzs:2: unexpected `3`: `vfork PARENT CHILD`");
}
