//! Tracepoint field offsets from tracefs `format` files, read at start-up: 6.1's
//! `kmem_cache_alloc` has no `name` field and 6.18's has, so offsets are never hard-coded.
use anyhow::{bail, Context};
use lazyvma_model::trace_abi::{TpOffsets, NO_FIELD};
use std::path::Path;

const EVENTS: &str = "/sys/kernel/tracing/events";

/// The `offset:` of each field named in one `format` file.
pub fn parse(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("field:") else { continue };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next().unwrap_or("");
        let Some(name) = decl.split_ascii_whitespace().last() else { continue };
        let name = name.split('[').next().unwrap_or(name);
        let off = parts.find_map(|p| p.strip_prefix("offset:")).and_then(|v| v.parse().ok());
        if let Some(off) = off {
            out.push((name.to_string(), off));
        }
    }
    out
}

pub struct Format {
    event: String,
    fields: Vec<(String, u64)>,
}

impl Format {
    pub fn read(event: &str) -> anyhow::Result<Format> {
        let (cat, name) = event.split_once(':').expect("category:name");
        let path = Path::new(EVENTS).join(cat).join(name).join("format");
        let text = std::fs::read_to_string(&path).with_context(|| format!("tracepoint {event} is not available ({})", path.display()))?;
        Ok(Format { event: event.into(), fields: parse(&text) })
    }

    pub fn get(&self, field: &str) -> Option<u64> {
        self.fields.iter().find(|(n, _)| n == field).map(|(_, o)| *o)
    }

    pub fn need(&self, field: &str) -> anyhow::Result<u64> {
        match self.get(field) {
            Some(o) => Ok(o),
            None => bail!("tracepoint {} has no field `{field}` on this kernel", self.event),
        }
    }
}

/// Every offset the programs read. The madvise marker is optional (no FTRACE_SYSCALLS):
/// `None` then, and phases are not available.
pub fn offsets() -> anyhow::Result<(TpOffsets, Option<String>)> {
    let alloc = Format::read("kmem:kmem_cache_alloc")?;
    let free = Format::read("kmem:kmem_cache_free")?;
    let fork = Format::read("sched:sched_process_fork")?;
    let newtask = Format::read("task:task_newtask")?;
    let exec = Format::read("sched:sched_process_exec")?;
    let exit = Format::read("sched:sched_process_exit")?;
    let (madvise_behavior, marker_problem) = match Format::read("syscalls:sys_enter_madvise").and_then(|f| f.need("behavior")) {
        Ok(o) => (o, None),
        Err(e) => (NO_FIELD, Some(format!("{e:#}"))),
    };
    let o = TpOffsets {
        alloc_call_site: alloc.need("call_site")?,
        alloc_ptr: alloc.need("ptr")?,
        alloc_bytes_req: alloc.need("bytes_req")?,
        alloc_bytes_alloc: alloc.need("bytes_alloc")?,
        free_call_site: free.need("call_site")?,
        free_ptr: free.need("ptr")?,
        fork_child_pid: fork.need("child_pid")?,
        newtask_pid: newtask.need("pid")?,
        newtask_clone_flags: newtask.need("clone_flags")?,
        exec_old_pid: exec.need("old_pid")?,
        exit_group_dead: exit.get("group_dead").unwrap_or(NO_FIELD),
        madvise_behavior,
    };
    Ok((o, marker_problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 6.1's kmem_cache_alloc: no `name` field, so bytes_req sits at 24, not 32.
    const ALLOC_6_1: &str = "name: kmem_cache_alloc\nID: 1\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:unsigned long call_site;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:size_t bytes_req;\toffset:24;\tsize:8;\tsigned:0;\n\tfield:size_t bytes_alloc;\toffset:32;\tsize:8;\tsigned:0;\n";
    const EXIT_6_18: &str = "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";

    #[test]
    fn offsets_come_from_the_text() {
        let f = parse(ALLOC_6_1);
        assert!(f.contains(&("bytes_req".into(), 24)));
        assert!(f.contains(&("ptr".into(), 16)));
        assert!(f.contains(&("common_type".into(), 0)));
        let e = parse(EXIT_6_18);
        assert_eq!(e, vec![("comm".into(), 8), ("pid".into(), 24), ("group_dead".into(), 32)]);
    }
}
