//! Scenario text → events and expectations. Errors are `file:line: what was expected`.

use crate::event::{vm, Advice, Event, FaultKind, Pid, RmapCaller};
use crate::kernel::Kernel;
use crate::knobs::Knobs;
use crate::lazy::Rule;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {msg}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Eager,
    Lazy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AnonVma,
    AnonVmaChain,
    VmAreaStruct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// `+alloc/-free`
    Delta(u64, u64),
    Count(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The event just before.
    Step,
    /// Since the last `phase` line.
    Phase,
    /// Since the start.
    Total,
    Live,
    Peak,
    Rules(Vec<(Rule, u64)>),
    /// `walks`, `locked`, `avoided`, `no_folio` for one caller.
    Rmap(RmapCaller, Vec<(String, u64)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub side: Side,
    /// Kernel of this expectation's run (`[kernel=6.1]`), else the file's.
    pub kernel: Option<Kernel>,
    /// Knob settings on top of the file's (`[fork_of_tree_parent=share]`).
    pub knobs: Vec<String>,
    pub scope: Scope,
    pub items: Vec<(Kind, Want)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    Expect(Expect),
    /// A line that changes no mm (a step of zeros): `vfork` (`child` shares `owner`'s mm, no
    /// `dup_mmap`), or the exit of a child still sharing it (the mm is not its to tear down).
    SharesMm {
        child: Pid,
        owner: Pid,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub line: usize,
    pub text: String,
    pub item: Item,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    pub file: String,
    pub kernel: Kernel,
    pub knobs: Knobs,
    pub lines: Vec<Line>,
}

type R<T> = Result<T, String>;

fn num(s: &str, what: &str) -> R<u64> {
    let t = s.replace('_', "");
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    v.map_err(|_| format!("expected {what} (a number), found `{s}`"))
}

fn pid(s: &str) -> R<Pid> {
    let v = num(s, "a pid")?;
    u32::try_from(v).map_err(|_| format!("pid `{s}` does not fit in 32 bits"))
}

fn prot(s: &str) -> R<u16> {
    if s == "none" || s.chars().all(|c| c == '-') {
        return Ok(0);
    }
    let mut p = 0;
    for c in s.chars() {
        p |= match c {
            'r' => vm::READ,
            'w' => vm::WRITE,
            'x' => vm::EXEC,
            '-' => 0,
            _ => return Err(format!("expected a protection like rw, r, rwx or none, found `{s}`")),
        };
    }
    Ok(p)
}

fn kind(s: &str) -> R<Kind> {
    match s {
        "av" | "anon_vma" => Ok(Kind::AnonVma),
        "avc" | "anon_vma_chain" => Ok(Kind::AnonVmaChain),
        "vma" | "vm_area_struct" => Ok(Kind::VmAreaStruct),
        _ => Err(format!("expected av, avc or vma, found `{s}`")),
    }
}

struct Args<'a> {
    words: &'a [&'a str],
    at: usize,
    usage: &'static str,
}

impl<'a> Args<'a> {
    fn next(&mut self, what: &str) -> R<&'a str> {
        let w = self.words.get(self.at).ok_or_else(|| format!("expected {what}: `{}`", self.usage))?;
        self.at += 1;
        Ok(w)
    }
    fn opt(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.at)?;
        self.at += 1;
        Some(w)
    }
    fn done(&self) -> R<()> {
        match self.words.get(self.at) {
            None => Ok(()),
            Some(w) => Err(format!("unexpected `{w}`: `{}`", self.usage)),
        }
    }
}

fn event(words: &[&str]) -> R<Option<Event>> {
    let usage = match words[0] {
        "process" => "process PID",
        "mmap" => "mmap PID ADDR PAGES [PROT] [shared|dontfork|wipeonfork|mergeable]... [pgoff N]",
        "brk" => "brk PID ADDR PAGES",
        "write" | "read" | "thp" => "write|read|thp PID ADDR",
        "fork" => "fork PARENT CHILD",
        "exit" => "exit PID",
        "exec" => "exec PID [stack ADDR]",
        "mprotect" => "mprotect PID ADDR PAGES PROT",
        "munmap" => "munmap PID ADDR PAGES",
        "mremap" => "mremap PID OLD PAGES NEW [dontunmap | size NEW_PAGES]",
        "mlock" => "mlock PID ADDR PAGES [onfault]",
        "munlock" => "munlock PID ADDR PAGES",
        "madvise" => "madvise PID ADDR PAGES mergeable|unmergeable|dontfork|dofork|wipeonfork|keeponfork|guard_install|hugepage|nohugepage|normal|random|sequential|dontdump|dodump",
        "ksm" => "ksm merge PID ADDR [PAGES] | ksm cleanup",
        "collapse" => "collapse PID ADDR",
        "rmap" => "rmap PID ADDR CALLER",
        "phase" => "phase NAME",
        _ => return Ok(None),
    };
    let mut a = Args { words, at: 1, usage };
    let ev = match words[0] {
        "process" => Event::Spawn { pid: pid(a.next("a pid")?)? },
        "mmap" | "brk" => {
            let pid = pid(a.next("a pid")?)?;
            let start = num(a.next("an address")?, "an address")?;
            let pages = num(a.next("a page count")?, "a page count")?;
            let mut flags = vm::READ | vm::WRITE;
            let mut pgoff = None;
            if words[0] == "mmap" {
                if let Some(p) = a.opt() {
                    flags = prot(p)?;
                }
                while let Some(f) = a.opt() {
                    if f == "pgoff" {
                        pgoff = Some(num(a.next("a pgoff")?, "a pgoff")?);
                        continue;
                    }
                    flags |= match f {
                        "shared" => vm::SHARED,
                        "dontfork" => vm::DONTCOPY,
                        "wipeonfork" => vm::WIPEONFORK,
                        "mergeable" => vm::MERGEABLE,
                        _ => return Err(format!("expected shared, dontfork, wipeonfork or mergeable, found `{f}`")),
                    };
                }
            }
            match pgoff {
                Some(pgoff) => Event::MapPgoff { pid, start, pages, flags, pgoff },
                None => Event::Map { pid, start, pages, flags },
            }
        }
        "write" | "read" | "thp" => {
            let kind = match words[0] {
                "write" => FaultKind::Write,
                "read" => FaultKind::Read,
                _ => FaultKind::Thp,
            };
            Event::Fault { pid: pid(a.next("a pid")?)?, addr: num(a.next("an address")?, "an address")?, kind }
        }
        "fork" => Event::Fork { parent: pid(a.next("the parent pid")?)?, child: pid(a.next("the child pid")?)? },
        "exit" => Event::Exit { pid: pid(a.next("a pid")?)? },
        "exec" => {
            let p = pid(a.next("a pid")?)?;
            let stack = match a.opt() {
                None => None,
                Some("stack") => Some(num(a.next("the stack address")?, "the stack address")?),
                Some(w) => return Err(format!("expected `stack ADDR`, found `{w}`")),
            };
            Event::Exec { pid: p, stack }
        }
        "mprotect" => Event::Mprotect {
            pid: pid(a.next("a pid")?)?,
            start: num(a.next("an address")?, "an address")?,
            pages: num(a.next("a page count")?, "a page count")?,
            prot: prot(a.next("a protection")?)?,
        },
        "munmap" => Event::Munmap {
            pid: pid(a.next("a pid")?)?,
            start: num(a.next("an address")?, "an address")?,
            pages: num(a.next("a page count")?, "a page count")?,
        },
        "mremap" => {
            let pid = pid(a.next("a pid")?)?;
            let old = num(a.next("the old address")?, "the old address")?;
            let pages = num(a.next("a page count")?, "a page count")?;
            let new = num(a.next("the new address")?, "the new address")?;
            match a.opt() {
                None => Event::Mremap { pid, old, pages, new, dontunmap: false },
                Some("dontunmap") => Event::Mremap { pid, old, pages, new, dontunmap: true },
                Some("size") => Event::MremapResize { pid, old, pages, new, new_pages: num(a.next("the new page count")?, "a page count")? },
                Some(w) => return Err(format!("expected `dontunmap` or `size N`, found `{w}`")),
            }
        }
        "mlock" | "munlock" => {
            let pid = pid(a.next("a pid")?)?;
            let start = num(a.next("an address")?, "an address")?;
            let pages = num(a.next("a page count")?, "a page count")?;
            let flags = match (words[0], a.opt()) {
                ("munlock", None) => 0,
                ("mlock", None) => vm::LOCKED,
                ("mlock", Some("onfault")) => vm::LOCKED | vm::LOCKONFAULT,
                (_, Some(w)) => return Err(format!("expected `onfault` or nothing, found `{w}`")),
                _ => unreachable!(),
            };
            Event::Mlock { pid, start, pages, flags }
        }
        "madvise" => {
            let pid = pid(a.next("a pid")?)?;
            let start = num(a.next("an address")?, "an address")?;
            let pages = num(a.next("a page count")?, "a page count")?;
            let advice = match a.next("an advice")? {
                "mergeable" => Advice::Mergeable,
                "unmergeable" => Advice::Unmergeable,
                "dontfork" => Advice::DontFork,
                "dofork" => Advice::DoFork,
                "wipeonfork" => Advice::WipeOnFork,
                "keeponfork" => Advice::KeepOnFork,
                "guard_install" => Advice::GuardInstall,
                "hugepage" => Advice::Hugepage,
                "nohugepage" => Advice::NoHugepage,
                "normal" => Advice::Normal,
                "random" => Advice::Random,
                "sequential" => Advice::Sequential,
                "dontdump" => Advice::DontDump,
                "dodump" => Advice::DoDump,
                w => return Err(format!("unknown advice `{w}`: `{usage}`")),
            };
            Event::Madvise { pid, start, pages, advice }
        }
        "ksm" => match a.next("merge or cleanup")? {
            "merge" => {
                let pid = pid(a.next("a pid")?)?;
                let addr = num(a.next("an address")?, "an address")?;
                let pages = match a.opt() {
                    Some(p) => u32::try_from(num(p, "a page count")?).map_err(|_| "page count too large".to_string())?,
                    None => 1,
                };
                Event::KsmMerge { pid, addr, pages }
            }
            "cleanup" => Event::KsmCleanup,
            w => return Err(format!("expected `ksm merge` or `ksm cleanup`, found `ksm {w}`")),
        },
        "collapse" => Event::ThpCollapse { pid: pid(a.next("a pid")?)?, addr: num(a.next("an address")?, "an address")? },
        "rmap" => {
            let pid = pid(a.next("a pid")?)?;
            let addr = num(a.next("an address")?, "an address")?;
            let c = a.next("a caller")?;
            let caller = RmapCaller::from_name(c).ok_or_else(|| {
                let names: Vec<_> = RmapCaller::ALL.iter().map(|c| c.name()).collect();
                format!("unknown rmap caller `{c}`; callers: {}", names.join(", "))
            })?;
            Event::RmapWalk { pid, addr, caller }
        }
        "phase" => Event::Phase(a.next("a phase name")?.to_string()),
        _ => unreachable!("every word with a usage is parsed"),
    };
    a.done()?;
    Ok(Some(ev))
}

fn want(v: &str, delta: bool) -> R<Want> {
    if delta {
        let (a, f) = v
            .split_once('/')
            .and_then(|(a, f)| Some((a.strip_prefix('+')?, f.strip_prefix('-')?)))
            .ok_or_else(|| format!("expected +ALLOC/-FREE, found `{v}`"))?;
        Ok(Want::Delta(num(a, "an allocation count")?, num(f, "a free count")?))
    } else {
        Ok(Want::Count(num(v, "a count")?))
    }
}

fn expect(words: &[&str], base: &Knobs) -> R<Expect> {
    const USAGE: &str = "expect eager|lazy[SETTINGS] step|phase|total|live|peak KIND=VALUE... | rules RULE=N... | rmap CALLER FIELD=N...";
    let model = words.get(1).ok_or_else(|| format!("expected a model: `{USAGE}`"))?;
    let (side, settings) = match model.split_once('[') {
        Some((s, rest)) => (s, Some(rest.strip_suffix(']').ok_or_else(|| format!("expected `]` closing `{model}`"))?)),
        None => (*model, None),
    };
    let side = match side {
        "eager" => Side::Eager,
        "lazy" => Side::Lazy,
        _ => return Err(format!("expected eager or lazy, found `{side}`: `{USAGE}`")),
    };
    let mut kernel = None;
    let mut knobs = Vec::new();
    for s in settings.into_iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(k) = s.strip_prefix("kernel=") {
            kernel = Some(Kernel::parse(k).ok_or_else(|| format!("unknown kernel `{k}` (5.19, 6.1 or 6.18)"))?);
        } else {
            if side == Side::Eager {
                return Err(format!("knob `{s}` on an eager expectation (only kernel=...)"));
            }
            base.clone().set(s).map_err(|e| e.to_string())?;
            knobs.push(s.to_string());
        }
    }
    let scope_word = *words.get(2).ok_or_else(|| format!("expected a scope: `{USAGE}`"))?;
    let pairs = |from: usize| -> R<Vec<(&str, &str)>> {
        words[from..].iter().map(|w| w.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, found `{w}`"))).collect()
    };
    let mut items = Vec::new();
    let scope = match scope_word {
        "step" | "phase" | "total" | "live" | "peak" => {
            let delta = matches!(scope_word, "step" | "phase" | "total");
            for (k, v) in pairs(3)? {
                items.push((kind(k)?, want(v, delta)?));
            }
            match scope_word {
                "step" => Scope::Step,
                "phase" => Scope::Phase,
                "total" => Scope::Total,
                "live" => Scope::Live,
                _ => Scope::Peak,
            }
        }
        "rules" => {
            let mut rs = Vec::new();
            for (k, v) in pairs(3)? {
                let r = Rule::ALL.iter().find(|r| r.name().eq_ignore_ascii_case(k)).ok_or_else(|| format!("unknown rule `{k}` (L1..L18)"))?;
                rs.push((*r, num(v, "a count")?));
            }
            Scope::Rules(rs)
        }
        "rmap" => {
            let c = words.get(3).ok_or_else(|| format!("expected a caller: `{USAGE}`"))?;
            let caller = RmapCaller::from_name(c).ok_or_else(|| format!("unknown rmap caller `{c}`"))?;
            let mut fs = Vec::new();
            for (k, v) in pairs(4)? {
                if !matches!(k, "walks" | "locked" | "avoided" | "no_folio") {
                    return Err(format!("expected walks, locked, avoided or no_folio, found `{k}`"));
                }
                fs.push((k.to_string(), num(v, "a count")?));
            }
            Scope::Rmap(caller, fs)
        }
        w => return Err(format!("expected step, phase, total, live, peak, rules or rmap, found `{w}`")),
    };
    if matches!(scope, Scope::Step | Scope::Phase | Scope::Total | Scope::Live | Scope::Peak) && items.is_empty() {
        return Err(format!("expected at least one KIND=VALUE after `{scope_word}`"));
    }
    Ok(Expect { side, kernel, knobs, scope, items })
}

/// Whose mm each pid uses: vfork children share their parent's until they exec or exit, so
/// the model (which knows processes, not mms) sees their events as the parent's.
#[derive(Default)]
struct Mms {
    /// Processes with an mm of their own, as far as the file says.
    own: BTreeSet<Pid>,
    /// vfork child → the process whose mm it shares.
    shares: BTreeMap<Pid, Pid>,
}

/// The process an event acts on (for `fork`, the parent).
fn actor(ev: &mut Event) -> Option<&mut Pid> {
    match ev {
        Event::Spawn { pid }
        | Event::Map { pid, .. }
        | Event::MapPgoff { pid, .. }
        | Event::Fault { pid, .. }
        | Event::Exit { pid }
        | Event::Exec { pid, .. }
        | Event::Mprotect { pid, .. }
        | Event::Madvise { pid, .. }
        | Event::Munmap { pid, .. }
        | Event::Mremap { pid, .. }
        | Event::MremapResize { pid, .. }
        | Event::Mlock { pid, .. }
        | Event::KsmMerge { pid, .. }
        | Event::ThpCollapse { pid, .. }
        | Event::RmapWalk { pid, .. } => Some(pid),
        Event::Fork { parent, .. } => Some(parent),
        Event::KsmCleanup | Event::SetKernel(_) | Event::Phase(_) => None,
    }
}

impl Mms {
    fn vfork(&mut self, words: &[&str]) -> R<Item> {
        let mut a = Args { words, at: 1, usage: "vfork PARENT CHILD" };
        let (parent, child) = (pid(a.next("the parent pid")?)?, pid(a.next("the child pid")?)?);
        a.done()?;
        let owner = match self.shares.get(&parent) {
            Some(&o) => o,
            None if self.own.contains(&parent) => parent,
            None => return Err(format!("vfork of {parent}, which is not a process (`process {parent}` or a fork first)")),
        };
        self.in_use(child)?;
        self.shares.insert(child, owner);
        Ok(Item::SharesMm { child, owner })
    }

    fn in_use(&self, p: Pid) -> R<()> {
        match self.shares.get(&p) {
            Some(o) => Err(format!("pid {p} is in use: a vfork child sharing {o}'s mm")),
            None if self.own.contains(&p) => Err(format!("pid {p} is in use: a process")),
            None => Ok(()),
        }
    }

    /// The lines `ev` becomes: a sharing child's events act on its owner's mm; its exec
    /// first gives it an mm of its own (`process`, as trace's feed does at a vfork child's
    /// exec); its exit is a line of zeros. `Some(text)` replaces a line's shown text.
    fn event(&mut self, mut ev: Event) -> R<Vec<(Item, Option<String>)>> {
        let mut out = Vec::new();
        match &ev {
            Event::Spawn { pid } => self.in_use(*pid)?,
            Event::Fork { child, .. } => self.in_use(*child)?,
            _ => {}
        }
        if let Some(p) = actor(&mut ev).map(|p| *p) {
            if let Some(&owner) = self.shares.get(&p) {
                match ev {
                    Event::Exit { .. } => {
                        self.shares.remove(&p);
                        return Ok(vec![(Item::SharesMm { child: p, owner }, None)]);
                    }
                    Event::Exec { .. } => {
                        self.shares.remove(&p);
                        self.own.insert(p);
                        out.push((Item::Event(Event::Spawn { pid: p }), Some(format!("process {p} (the vfork child's own mm, at its exec)"))));
                    }
                    _ => *actor(&mut ev).expect("has an actor") = owner,
                }
            } else if matches!(ev, Event::Exit { .. } | Event::Exec { .. }) {
                if let Some((c, _)) = self.shares.iter().find(|(_, &o)| o == p) {
                    return Err(format!("{p}'s mm is shared by its vfork child {c}: `exec {c}` or `exit {c}` first"));
                }
            }
        }
        match &ev {
            Event::Spawn { pid } => {
                self.own.insert(*pid);
            }
            Event::Fork { child, .. } => {
                self.own.insert(*child);
            }
            Event::Exit { pid } => {
                self.own.remove(pid);
            }
            _ => {}
        }
        out.push((Item::Event(ev), None));
        Ok(out)
    }
}

/// Parse a scenario; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ParseError> {
    let mut sc = Scenario { file: file.to_string(), kernel: Kernel::default(), knobs: Knobs::default(), lines: Vec::new() };
    let mut seen_event = false;
    let mut mms = Mms::default();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let err = |msg: String| ParseError { file: file.to_string(), line, msg };
        let text = raw.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let item = match words[0] {
            "kernel" | "knob" if seen_event => {
                return Err(err(format!("`{}` must come before the first event", words[0])));
            }
            "kernel" => {
                let [_, v] = words[..] else { return Err(err("expected `kernel 5.19|6.1|6.18`".into())) };
                sc.kernel = Kernel::parse(v).ok_or_else(|| err(format!("unknown kernel `{v}` (5.19, 6.1 or 6.18)")))?;
                continue;
            }
            "knob" => {
                let [_, v] = words[..] else { return Err(err("expected `knob NAME=VALUE`".into())) };
                sc.knobs.set(v).map_err(|e| err(e.to_string()))?;
                continue;
            }
            "expect" => Item::Expect(expect(&words, &sc.knobs).map_err(err)?),
            "vfork" => {
                seen_event = true;
                mms.vfork(&words).map_err(err)?
            }
            w => match event(&words).map_err(err)? {
                Some(ev) => {
                    seen_event = true;
                    for item in mms.event(ev).map_err(err)? {
                        sc.lines.push(Line { line, text: item.1.unwrap_or_else(|| text.to_string()), item: item.0 });
                    }
                    continue;
                }
                None => return Err(err(format!("unknown directive `{w}` (see docs/scenarios.md)"))),
            },
        };
        sc.lines.push(Line { line, text: text.to_string(), item });
    }
    if !seen_event {
        // An empty file is a wrong path or a truncated write far more often than a scenario.
        let line = text.lines().count().max(1);
        return Err(ParseError { file: file.to_string(), line, msg: "expected at least one event (e.g. `process 1`), found none".into() });
    }
    Ok(sc)
}
