//! README.md's kernel table, rewritten between its two markers from the matrix's results,
//! so the table says what the guests last did and nothing a person typed.
use super::COMMANDS;
use crate::util;
use anyhow::{Context, Result};
use serde_json::Value;

const BEGIN: &str = "<!-- vm-matrix: begin";
const END: &str = "<!-- vm-matrix: end -->";

pub fn rewrite(results: &Value) -> Result<()> {
    let path = util::workspace_root().join("README.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let (a, rest) = text.split_at(text.find(BEGIN).with_context(|| format!("README.md has no `{BEGIN}` line"))?);
    let b = rest.find(END).with_context(|| format!("README.md has no `{END}` line"))?;
    let out = format!("{a}{}{}", table(results), &rest[b..]);
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// The marker line, the table, and one numbered note per command that did not pass.
pub(super) fn table(results: &Value) -> String {
    let mut s = format!("{BEGIN} (`cargo xtask vm-matrix --readme` writes this table from target/vm-matrix/results.json; do not edit) -->\n");
    s += &format!("| kernel | arch | release | {} | run |\n", COMMANDS.map(column).join(" | "));
    s += &format!("|{}\n", "---|".repeat(COMMANDS.len() + 4));
    let mut cells: Vec<&Value> = results["cells"].as_array().into_iter().flatten().collect();
    cells.sort_by_key(|c| (series_key(c["kernel"].as_str().unwrap_or("")), c["arch"].as_str().unwrap_or("").to_string()));
    let mut notes = Vec::new();
    for c in cells {
        let (arch, kernel) = (c["arch"].as_str().unwrap_or("?"), c["kernel"].as_str().unwrap_or("?"));
        let mut row = format!("| {kernel} | {arch} | `{}` |", c["release"].as_str().unwrap_or("?"));
        for cmd in COMMANDS {
            let r = &c["commands"][cmd];
            if r.is_null() {
                // A row from before the command was added to the matrix.
                row += " – |";
            } else if r["verdict"] == "ok" {
                row += " ok |";
            } else {
                notes.push(format!("{arch} {kernel} `{cmd}`: {}", r["why"].as_str().unwrap_or("").replace('|', "/")));
                // n/a: the kernel lacks what the command needs, and lazyvma said so in one line.
                let mark = if r["verdict"] == "unsupported" { "n/a" } else { "**no**" };
                row += &format!(" {mark} [{}] |", notes.len());
            }
        }
        row += &format!(" {} `{}`, {:.0} s |\n", c["date"].as_str().unwrap_or(""), c["commit"].as_str().unwrap_or(""), c["secs"].as_f64().unwrap_or(0.0));
        s += &row;
    }
    let have = |arch: &str, kernel: &str| results["cells"].as_array().into_iter().flatten().any(|c| c["arch"] == arch && c["kernel"] == kernel);
    let absent: Vec<String> = crate::vm::Series::ALL
        .iter()
        .flat_map(|s| [crate::vm::Arch::X86_64, crate::vm::Arch::Aarch64].map(|a| (a.deb(), s.name())))
        .filter(|(a, k)| !have(a, k))
        .map(|(a, k)| format!("{a} {k}"))
        .collect();
    if !absent.is_empty() {
        s += &format!("\nNot in these results (never run since the results file was started): {}.\n", absent.join(", "));
    }
    if cells_lacking(results) {
        s += "\n– : not in that row's run (the command is newer than the row).\n";
    }
    if !notes.is_empty() {
        s += "\n";
        for (i, n) in notes.iter().enumerate() {
            s += &format!("{}. {n}\n", i + 1);
        }
    }
    s
}

fn cells_lacking(results: &Value) -> bool {
    results["cells"].as_array().into_iter().flatten().any(|c| COMMANDS.iter().any(|cmd| c["commands"][cmd].is_null()))
}

fn column(cmd: &str) -> &'static str {
    match cmd {
        "doctor" => "`doctor`",
        "workload" => "workloads",
        "snapshot" => "`snapshot -j`",
        "trace" => "`trace -p 1`",
        "serve" => "`serve`",
        "serve-snapshot" => "`serve --snapshot-only`",
        "many-vmas" => "2,000 VMAs",
        _ => "`report`",
    }
}

/// "5.10" < "6.1" < "6.12" numerically.
fn series_key(k: &str) -> (u32, u32) {
    let mut it = k.split('.').map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}
