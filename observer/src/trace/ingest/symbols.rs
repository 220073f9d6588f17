//! /proc/kallsyms as a sorted address table: the anon_vma functions' [start, end) ranges for
//! the BPF call_site filter, and names for kernel stack frames. Read here rather than through
//! `sys::kallsyms()`, whose by-name map drops duplicate static names; a dropped symbol would
//! silently widen the range of the function before it.
use anyhow::{bail, Context};

pub struct Symbols {
    /// (address, name), sorted by address; every symbol, text or not, since the next
    /// symbol of any kind ends a function.
    table: Vec<(u64, String)>,
    /// Text symbols only (kallsyms type t, T, W, w), sorted by (address, is a function):
    /// what a return address may be named after: (address, is a function, index in
    /// `table`). Markers sort first so a function at the same address wins.
    text: Vec<(u64, bool, u32)>,
    /// Indices in `table` sorted by name, for `has` (4 bytes a symbol, where a by-name map
    /// copied every name).
    by_name: Vec<u32>,
    /// [_sinittext, _einittext): init text, freed after boot, so no live frame is in it.
    init: Option<(u64, u64)>,
    /// [_stext, highest symbol not in a module]: the kernel image (text, data, init).
    /// BPF trampolines and modules lie outside it.
    image: Option<(u64, u64)>,
    /// While recording (`-o`): the entries `name` answered from, so the recording carries
    /// exactly the symbols a replay will ask for (not all of kallsyms, ~5 MB).
    used: Option<std::sync::Mutex<Used>>,
}

#[derive(Default)]
struct Used {
    seen: std::collections::HashSet<usize>,
    fresh: Vec<usize>,
    /// The image's end went out (as an [`IMAGE_END`] entry).
    image_sent: bool,
}

/// A recorded entry that is no symbol: the kernel image's end (`outside_kernel_image`).
const IMAGE_END: &str = "<image_end>";

/// Linker markers typed as text that bound sections rather than name functions.
const TEXT_MARKERS: &[&str] = &["_stext", "_text", "_etext", "_sinittext", "_einittext"];

impl Symbols {
    pub fn load() -> anyhow::Result<Symbols> {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> anyhow::Result<Symbols> {
        let (mut table, mut image_end) = (Vec::new(), 0);
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            if addr == 0 {
                continue;
            }
            // A fourth column is the module ("[bpf]" for BPF programs).
            if it.next().is_none() {
                image_end = image_end.max(addr);
            }
            // Weak symbols (W, w) are functions too: without them a frame in one would be
            // named after the function before it.
            table.push((addr, name.to_string(), matches!(kind, "t" | "T" | "W" | "w")));
        }
        if table.is_empty() {
            bail!("/proc/kallsyms shows no addresses (kptr_restrict?): call sites cannot be attributed");
        }
        table.sort_unstable();
        let mut funcs: Vec<(u64, bool, u32)> =
            table.iter().enumerate().filter(|(_, e)| e.2).map(|(i, (a, n, _))| (*a, !TEXT_MARKERS.contains(&n.as_str()), i as u32)).collect();
        funcs.sort_unstable();
        let at = |n: &str| funcs.iter().find(|(_, f, i)| !f && table[*i as usize].1 == n).map(|(a, _, _)| *a);
        let (init, image) = (at("_sinittext").zip(at("_einittext")), at("_stext").map(|s| (s, image_end)));
        let table: Vec<(u64, String)> = table.into_iter().map(|(a, n, _)| (a, n)).collect();
        let mut by_name: Vec<u32> = (0..table.len() as u32).collect();
        by_name.sort_unstable_by(|a, b| table[*a as usize].1.cmp(&table[*b as usize].1));
        Ok(Symbols { table, text: funcs, by_name, init, image, used: None })
    }

    /// No symbols: for a run that never names a frame (`KernelFacts::names_frames`).
    pub fn empty() -> Symbols {
        Symbols { table: vec![], text: vec![], by_name: vec![], init: None, image: None, used: None }
    }

    /// A replay's table: the entries a recording carried, all text symbols (only text
    /// symbols name frames) plus the section markers and the image's end. Each lookup of
    /// the recorded run answers the same: its text symbol, the next one that bounds it, and
    /// the markers were all recorded.
    pub fn from_entries(entries: Vec<(u64, String)>) -> Symbols {
        let image_end = entries.iter().find(|(_, n)| n == IMAGE_END).map(|(a, _)| *a);
        let text: String = entries.iter().filter(|(_, n)| n != IMAGE_END).map(|(a, n)| format!("{a:x} t {n}\n")).collect();
        match Symbols::parse(&text) {
            Ok(mut s) => {
                s.image = s.image.and_then(|(start, _)| Some((start, image_end?)));
                s
            }
            Err(_) => Symbols::empty(),
        }
    }

    /// Start noting which entries lookups use (`take_used`); the markers go first.
    pub fn track(&mut self) {
        let mut u = Used::default();
        for (i, (_, n)) in self.table.iter().enumerate() {
            if TEXT_MARKERS.contains(&n.as_str()) && u.seen.insert(i) {
                u.fresh.push(i);
            }
        }
        self.used = Some(std::sync::Mutex::new(u));
    }

    /// Entries used since the last call, each once per run.
    pub fn take_used(&self) -> Vec<(u64, String)> {
        let Some(u) = &self.used else { return vec![] };
        let mut u = u.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(u64, String)> = std::mem::take(&mut u.fresh).into_iter().map(|i| self.table[i].clone()).collect();
        if let (false, Some((_, end))) = (u.image_sent, self.image) {
            u.image_sent = true;
            out.push((end, IMAGE_END.into()));
        }
        out
    }

    fn note(&self, i: usize) {
        if let Some(u) = &self.used {
            let mut u = u.lock().unwrap_or_else(|e| e.into_inner());
            if u.seen.insert(i) {
                u.fresh.push(i);
            }
        }
    }

    /// Whether kallsyms lists `name` (module symbols too), for `backend::Facts::kallsyms`:
    /// saves a second read of /proc/kallsyms, slow under emulation.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.binary_search_by(|i| self.table[*i as usize].1.as_str().cmp(name)).is_ok()
    }

    /// [start, end) of `name`, end being the next higher symbol address.
    pub fn range(&self, name: &str) -> anyhow::Result<(u64, u64)> {
        let mut found = self.table.iter().enumerate().filter(|(_, (_, n))| n == name);
        let Some((i, &(start, _))) = found.next() else {
            bail!("{name} is not in /proc/kallsyms (inlined on this kernel?): its slab call sites cannot be attributed");
        };
        if found.next().is_some() {
            bail!("{name} appears more than once in /proc/kallsyms: its call sites would be ambiguous");
        }
        let end = self.table[i + 1..].iter().map(|(a, _)| *a).find(|a| *a > start);
        end.map(|e| (start, e)).with_context(|| format!("{name} is the last symbol in /proc/kallsyms: its end is unknown"))
    }

    /// [start, end) of every function in `trace_abi::FUNCTIONS`, in that order.
    pub fn function_ranges(&self) -> anyhow::Result<[(u64, u64); lazyvma_model::trace_abi::FN_COUNT]> {
        let mut ranges = [(0, 0); lazyvma_model::trace_abi::FN_COUNT];
        for (r, f) in ranges.iter_mut().zip(lazyvma_model::trace_abi::FUNCTIONS) {
            *r = self.range(f)?;
        }
        Ok(ranges)
    }

    /// The function containing `addr`, without compiler suffixes (`.isra.0`, `.cold`);
    /// `None` when no function can contain it: before the first text symbol, after the
    /// last one (its end is unknown), past `_etext`/`_einittext` (data, BPF and module
    /// memory kallsyms did not list when read), or in init text (freed after boot).
    pub fn name(&self, addr: u64) -> Option<&str> {
        if self.init.is_some_and(|(s, e)| (s..e).contains(&addr)) {
            return None;
        }
        let i = self.text.partition_point(|(a, _, _)| *a <= addr).checked_sub(1)?;
        let (start, function, at) = self.text[i];
        self.note(at as usize);
        // A function ends at the next text symbol; the last one's end is unknown.
        let (_, _, next) = self.text[i + 1..].iter().find(|(a, _, _)| *a > start)?;
        self.note(*next as usize);
        let n = &self.table[at as usize].1;
        function.then(|| n.split_once('.').map_or(n.as_str(), |(base, _)| base))
    }

    /// Whether `addr` is known to be outside the kernel image: a module, or BPF (whose
    /// trampolines kallsyms lists only once made). False when kallsyms gave no _stext.
    pub fn outside_kernel_image(&self, addr: u64) -> bool {
        self.image.is_some_and(|(s, e)| !(s..=e).contains(&addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ffffffff81000000 T a\nffffffff81000010 t b.isra.0\nffffffff81000010 t alias\nffffffff81000030 t c\nffffffff81000040 D data\n0000000000000000 A hidden\n";

    #[test]
    fn ranges_end_at_the_next_address_and_names_drop_suffixes() {
        let s = Symbols::parse(K).unwrap();
        assert_eq!(s.range("a").unwrap(), (0xffffffff81000000, 0xffffffff81000010));
        assert_eq!(s.range("alias").unwrap(), (0xffffffff81000010, 0xffffffff81000030));
        assert!(s.range("data").unwrap_err().to_string().contains("last symbol"));
        assert!(s.range("nope").unwrap_err().to_string().contains("not in /proc/kallsyms"));
        assert!(s.has("alias") && s.has("data") && s.has("b.isra.0") && !s.has("b") && !s.has("hidden"));
        assert_eq!(s.name(0xffffffff81000005), Some("a"));
        assert_eq!(s.name(0xffffffff81000000 - 1), None);
        assert!(matches!(s.name(0xffffffff81000011), Some("b") | Some("alias")));
        assert_eq!(s.name(0xffffffff81000031), None, "the last text symbol's end is unknown");
    }

    #[test]
    fn duplicates_are_refused_and_zero_addresses_are_an_error() {
        let s = Symbols::parse("ffffffff81000000 t x\nffffffff81000100 t x\nffffffff81000200 t y\n").unwrap();
        assert!(s.range("x").unwrap_err().to_string().contains("more than once"));
        assert!(Symbols::parse("0000000000000000 T a\n").is_err());
    }

    /// Lines of a Debian 6.12.118 cloud amd64 guest's /proc/kallsyms (KALLSYMS_ALL, KASLR).
    const GUEST: &str = include_str!("../../../tests/fixtures/kallsyms-6.12-amd64.txt");

    #[test]
    fn only_text_symbols_name_frames() {
        let s = Symbols::parse(GUEST).unwrap();
        assert_eq!(s.name(0xffffffffbb791950 + 0x40), Some("anon_vma_clone"));
        assert_eq!(s.name(0xffffffffbb79c6a0 + 0x100), Some("__split_vma"));
        assert_eq!(s.name(0xffffffffbb402df0 + 4), Some("calibration_delay_done"), "weak functions are text");
        // A BPF trampoline made after kallsyms was read: above every symbol, the highest of
        // which is data. It used to be named __init_scratch_end.
        assert_eq!(s.name(0xffffffffc0201000), None);
        assert_eq!(s.name(0xffffffffbe600000 + 8), None);
        assert_eq!(s.name(0xffffffffbc400000 + 0x10), None, "rodata, past _etext");
        assert_eq!(s.name(0xffffffffbd72f000 + 0x20), None, "init text is freed after boot");
        assert_eq!(s.name(0xffffffffbd7b6000), None, "init data, past _einittext");
        assert_eq!(s.name(0xffffffffbb400000 - 1), None);
        assert!(s.outside_kernel_image(0xffffffffc0201000));
        assert!(!s.outside_kernel_image(0xffffffffbb791950));
        assert!(!s.outside_kernel_image(0xffffffffbd72f020), "init text is in the image");
        assert_eq!(s.range("anon_vma_clone").unwrap(), (0xffffffffbb791950, 0xffffffffbb791b30));
    }
}
