//! /proc/kallsyms as a sorted address table: the anon_vma functions' [start, end) ranges for
//! the BPF call_site filter, and names for kernel stack frames. Read here rather than through
//! `sys::kallsyms()`, whose by-name map drops duplicate static names; a dropped symbol would
//! silently widen the range of the function before it.
use anyhow::{bail, Context};

pub struct Symbols {
    /// (address, name), sorted by address; every symbol, text or not, since the next
    /// symbol of any kind ends a function.
    table: Vec<(u64, String)>,
    /// While recording (`-o`): the entries `name`/`range` answered from, so the recording
    /// carries exactly the symbols a replay will ask for (not all of kallsyms, ~5 MB).
    used: Option<std::sync::Mutex<Used>>,
}

#[derive(Default)]
struct Used {
    seen: std::collections::HashSet<usize>,
    fresh: Vec<usize>,
}

impl Symbols {
    pub fn load() -> anyhow::Result<Symbols> {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> anyhow::Result<Symbols> {
        let mut table = Vec::new();
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(addr), Some(_), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            if addr != 0 {
                table.push((addr, name.to_string()));
            }
        }
        if table.is_empty() {
            bail!("/proc/kallsyms shows no addresses (kptr_restrict?): call sites cannot be attributed");
        }
        table.sort_unstable();
        Ok(Symbols { table, used: None })
    }

    /// A replay's table: the entries a recording carried. Lookups of the recorded run
    /// answer the same, since each used entry is the greatest address at or below its query.
    pub fn from_entries(mut table: Vec<(u64, String)>) -> Symbols {
        table.sort_unstable();
        table.dedup();
        Symbols { table, used: None }
    }

    /// Start noting which entries lookups use (`take_used`).
    pub fn track(&mut self) {
        self.used = Some(Default::default());
    }

    /// Entries used since the last call, each once per run.
    pub fn take_used(&self) -> Vec<(u64, String)> {
        let Some(u) = &self.used else { return vec![] };
        let mut u = u.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut u.fresh).into_iter().map(|i| self.table[i].clone()).collect()
    }

    fn note(&self, i: usize) {
        if let Some(u) = &self.used {
            let mut u = u.lock().unwrap_or_else(|e| e.into_inner());
            if u.seen.insert(i) {
                u.fresh.push(i);
            }
        }
    }

    /// Every name, for `backend::Facts::kallsyms` (which only asks whether a name is
    /// there): saves a second read of /proc/kallsyms, slow under emulation. The kind is
    /// not kept, so it is '?'.
    pub fn by_name(&self) -> std::collections::HashMap<String, (u64, char)> {
        let mut m = std::collections::HashMap::with_capacity(self.table.len());
        for (addr, name) in &self.table {
            m.entry(name.clone()).or_insert((*addr, '?'));
        }
        m
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
        self.note(i);
        let end = self.table[i + 1..].iter().position(|(a, _)| *a > start).map(|j| {
            self.note(i + 1 + j);
            self.table[i + 1 + j].0
        });
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

    /// The function containing `addr`, without compiler suffixes (`.isra.0`, `.cold`).
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.table.partition_point(|(a, _)| *a <= addr).checked_sub(1)?;
        self.note(i);
        let n = self.table[i].1.as_str();
        Some(n.split_once('.').map_or(n, |(base, _)| base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ffffffff81000000 T a\nffffffff81000010 t b.isra.0\nffffffff81000010 t alias\nffffffff81000040 D data\n0000000000000000 A hidden\n";

    #[test]
    fn ranges_end_at_the_next_address_and_names_drop_suffixes() {
        let s = Symbols::parse(K).unwrap();
        assert_eq!(s.range("a").unwrap(), (0xffffffff81000000, 0xffffffff81000010));
        assert_eq!(s.range("alias").unwrap(), (0xffffffff81000010, 0xffffffff81000040));
        assert!(s.range("data").unwrap_err().to_string().contains("last symbol"));
        assert!(s.range("nope").unwrap_err().to_string().contains("not in /proc/kallsyms"));
        assert_eq!(s.name(0xffffffff81000005), Some("a"));
        assert_eq!(s.name(0xffffffff81000000 - 1), None);
        assert!(matches!(s.name(0xffffffff81000011), Some("b") | Some("alias")));
    }

    #[test]
    fn duplicates_are_refused_and_zero_addresses_are_an_error() {
        let s = Symbols::parse("ffffffff81000000 t x\nffffffff81000100 t x\nffffffff81000200 t y\n").unwrap();
        assert!(s.range("x").unwrap_err().to_string().contains("more than once"));
        assert!(Symbols::parse("0000000000000000 T a\n").is_err());
    }
}
