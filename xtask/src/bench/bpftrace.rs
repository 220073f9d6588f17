//! The reference tracer: a bpftrace script that counts the slab events lazyvma attributes,
//! with the same in-kernel filter (call_site inside the rmap.c functions' kallsyms ranges,
//! observer-ebpf/src/slab.rs) and nothing sent to userspace per event: what counting alone
//! costs with a generic tool.
use anyhow::{bail, Context, Result};

/// lazyvma_model::trace_abi::FUNCTIONS: the functions whose slab calls are anon_vma ones.
const FUNCTIONS: [&str; 5] = ["__anon_vma_prepare", "anon_vma_clone", "anon_vma_fork", "unlink_anon_vmas", "__put_anon_vma"];

/// [start, end) of each function: its address to the next higher symbol's (any kind), as
/// lazyvma's trace/ingest/symbols.rs bounds them.
pub fn ranges(kallsyms: &str) -> Result<Vec<(&'static str, u64, u64)>> {
    let mut addrs: Vec<u64> = Vec::new();
    let mut starts = [0u64; FUNCTIONS.len()];
    for line in kallsyms.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(a), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
        let Ok(a) = u64::from_str_radix(a, 16) else { continue };
        if a == 0 {
            continue;
        }
        addrs.push(a);
        if it.next().is_none() && matches!(kind, "t" | "T") {
            if let Some(i) = FUNCTIONS.iter().position(|f| *f == name) {
                starts[i] = a;
            }
        }
    }
    if addrs.is_empty() {
        bail!("/proc/kallsyms shows no addresses (run as root)");
    }
    addrs.sort_unstable();
    addrs.dedup();
    let mut out = Vec::new();
    for (f, &s) in FUNCTIONS.iter().zip(&starts) {
        if s == 0 {
            bail!("{f} is not in /proc/kallsyms");
        }
        let end = addrs[addrs.partition_point(|&a| a <= s)..].first().copied().with_context(|| format!("no symbol after {f}"))?;
        out.push((*f, s, end));
    }
    Ok(out)
}

/// Two probes, one counter each. Not keyed by function: bpftrace 0.17's code for a nested
/// ternary key fails the verifier, and a probe per function would attach five programs.
pub fn script(ranges: &[(&str, u64, u64)]) -> String {
    // bpftrace warns that these compare signed and unsigned; the addresses' comparisons are
    // unsigned, checked by the fork loop's counts being non-zero.
    let filter = ranges.iter().map(|(_, s, e)| format!("(args->call_site >= {s:#x} && args->call_site < {e:#x})")).collect::<Vec<_>>().join(" || ");
    let mut s = String::new();
    for (probe, map) in [("kmem_cache_alloc", "alloc"), ("kmem_cache_free", "free")] {
        s += &format!("tracepoint:kmem:{probe} /{filter}/ {{ @{map} = count(); }}\n");
    }
    s
}

/// `@alloc: N` / `@free: N` of bpftrace's exit dump; None when it printed neither (a
/// program that did not load).
pub fn totals(out: &str) -> Option<(u64, u64)> {
    let get = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok());
    let (a, f) = (get("@alloc:"), get("@free:"));
    (a.is_some() || f.is_some()).then(|| (a.unwrap_or(0), f.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_ends_at_the_next_symbol_of_any_kind() {
        let k = "ffff0010 T __anon_vma_prepare\nffff0030 d some_data\nffff0020 t anon_vma_clone\nffff0028 T anon_vma_fork\n\
                 ffff0040 T unlink_anon_vmas\nffff0050 T __put_anon_vma\nffff0060 T after\nffff0055 t x [mod]\n";
        let r = ranges(k).unwrap();
        assert_eq!(r[0], ("__anon_vma_prepare", 0xffff0010, 0xffff0020));
        assert_eq!(r[2], ("anon_vma_fork", 0xffff0028, 0xffff0030));
        assert_eq!(r[4], ("__put_anon_vma", 0xffff0050, 0xffff0055));
        let s = script(&r);
        assert!(s.contains("tracepoint:kmem:kmem_cache_free /(args->call_site >= 0xffff0010"), "{s}");
        assert_eq!(totals("Attaching 2 probes...\n\n@alloc: 12\n@free: 3\n"), Some((12, 3)));
        assert_eq!(totals("Attaching 2 probes...\n"), None);
    }
}
