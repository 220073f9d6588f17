//! `lazyvma report` and `lazyvma merge` on real snapshots (root), per-cgroup attribution of
//! a workload moved into its own cgroup, bad input (no root), and the HTML page loaded in
//! headless Chromium.
use base64::{engine::general_purpose::STANDARD, Engine};
use hdrhistogram::{serialization::Deserializer, Histogram};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::*;

const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");

/// A failure is exit 1 with one line on stderr containing every needle.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert!(!err.contains("panicked"), "stderr: {err}");
}

fn snapshot_to(file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["snapshot", "-j"];
    args.extend(extra);
    let text = ok(&lazyvma(&args));
    std::fs::write(file, &text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn kb(bytes: &Value) -> String {
    format!("{:.1}", n(bytes) as f64 / 1024.0)
}

/// `lazyvma-workload fork -n 3 --hold`: parent and child pids, held until drop.
#[test]
fn report_of_a_real_snapshot_with_cgroups() {
    if !root_or_skip("report_of_a_real_snapshot_with_cgroups") {
        return;
    }
    let dir = Dir::new("snap");
    let w = HeldFork::start(3);
    let cg = TestCgroup::new("report-snap");
    [w.parent, w.child].iter().for_each(|&p| cg.add(p));
    let snap = snapshot_to(&dir.path("a.json"), &["--by-cgroup"]);

    // The issue-2 keys stay; the schema's keys are added.
    for k in ["processes", "total", "elapsed_ms"] {
        assert!(snap.get(k).is_some(), "snapshot -j lost `{k}`");
    }
    assert_eq!((snap["schema"].as_str(), snap["version"].as_u64(), snap["source"].as_str()), (Some("lazyvma-report"), Some(1), Some("snapshot")));
    assert_eq!(snap["histograms"]["contract"], json!({"low": 1, "high": 60_000_000_000u64, "sigfig": 3}));
    for (obj, total) in [("anon_vma", &snap["total"]["eager"]["anon_vma"]), ("anon_vma_chain", &snap["total"]["eager"]["anon_vma_chain"])] {
        let row = &snap["objects"][obj];
        assert_eq!(&row["eager"]["objects"], total);
        assert_eq!(n(&row["eager"]["bytes"]), n(total) * n(&row["size"]));
        assert_eq!(row["lazy"]["objects"], snap["total"]["lazy"][obj]);
    }

    // The workload's cgroup holds exactly its two processes and their counts (spec §1.4:
    // parent 3 test AV / 3 AVC more than its baseline, child 3 / 6; lazy child 0 AV).
    let path = format!("/{}", cg.dir().file_name().unwrap().to_str().unwrap());
    let row = snap["cgroups"].as_array().unwrap().iter().find(|c| c["path"] == path.as_str()).expect("the test cgroup has a row").clone();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(row["id"].as_u64(), Some(std::fs::metadata(cg.dir()).unwrap().ino()));
    assert_eq!(row["processes"], 2);
    let procs: Vec<&Value> =
        snap["processes"].as_array().unwrap().iter().filter(|p| [w.parent, w.child].contains(&(p["pid"].as_u64().unwrap() as u32))).collect();
    assert_eq!(procs.len(), 2);
    for (side, obj) in [("eager", "anon_vma"), ("eager", "anon_vma_chain"), ("lazy", "anon_vma"), ("lazy", "anon_vma_chain")] {
        assert_eq!(n(&row[side][obj]), procs.iter().map(|p| n(&p[side][obj])).sum::<i64>(), "{side}.{obj}");
    }
    // Every process is in exactly one row, with or without a cap.
    let sum = |cgroups: &Value, k: &str| cgroups.as_array().unwrap().iter().map(|c| n(&c["eager"][k])).sum::<i64>();
    let all: i64 = snap["processes"].as_array().unwrap().iter().map(|p| n(&p["eager"]["anon_vma_chain"])).sum();
    assert_eq!(sum(&snap["cgroups"], "anon_vma_chain"), all);
    let capped = snapshot_to(&dir.path("capped.json"), &["--by-cgroup", "--cgroup-cap", "1"]);
    let rows = capped["cgroups"].as_array().unwrap();
    assert!(rows.len() <= 2, "{rows:?}");
    if rows.len() == 2 {
        assert_eq!(rows[1]["path"], "other");
    }
    let all: i64 = capped["processes"].as_array().unwrap().iter().map(|p| n(&p["eager"]["anon_vma_chain"])).sum();
    assert_eq!(sum(&capped["cgroups"], "anon_vma_chain"), all);
    let procs: u64 = rows.iter().map(|c| c["processes"].as_u64().unwrap()).sum();
    assert_eq!(procs as usize, capped["processes"].as_array().unwrap().len());

    // Text: the seed's table first, with the JSON's numbers; then lock avoidance, processes, cgroups.
    let text = ok(&lazyvma(&["report", &dir.file("a.json")]));
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == "Object | Before (KB) | After (KB) | Change").expect("seed header");
    assert!(lines[..at].iter().all(|l| !l.contains(" | ")), "the seed table comes first");
    for (i, obj) in ["vm_area_struct", "anon_vma_chain", "anon_vma"].iter().enumerate() {
        let r = &snap["objects"][obj];
        let (b, a) = (n(&r["eager"]["bytes"]), n(&r["lazy"]["bytes"]));
        let change = if b == 0 { "n/a".to_string() } else { format!("{:+.1}%", (a - b) as f64 / b as f64 * 100.0) };
        assert_eq!(lines[at + 1 + i], format!("{obj} | {} | {} | {change}", kb(&r["eager"]["bytes"]), kb(&r["lazy"]["bytes"])));
    }
    let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("`{s}` missing from:\n{text}"));
    assert!(pos("Object | Before (KB)") < pos("Lock avoidance:"));
    assert!(pos("Lock avoidance:") < pos("Top processes by savings:"));
    assert!(pos("Top processes by savings:") < pos("Top cgroups by savings:"));
    assert!(text.contains(&format!("| {path} | 2 |")), "{text}");
    let md = ok(&lazyvma(&["report", "-O", "markdown", &dir.file("a.json")]));
    assert!(md.starts_with("# lazyvma report: snapshot on "), "{md}");
    assert!(md.contains("| Object | Before (KB) | After (KB) | Change |\n|---|---|---|---|\n| vm_area_struct |"), "{md}");
}

fn decode(h: &Value) -> Histogram<u64> {
    assert_eq!(h["encoding"], "hdrhistogram-v2-deflate-base64");
    let bytes = STANDARD.decode(h["data"].as_str().unwrap()).unwrap();
    Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap()
}

#[test]
fn merge_of_two_real_snapshots() {
    if !root_or_skip("merge_of_two_real_snapshots") {
        return;
    }
    let dir = Dir::new("merge");
    let a = snapshot_to(&dir.path("a.json"), &[]);
    let b = snapshot_to(&dir.path("b.json"), &[]);
    let out = lazyvma(&["merge", &dir.file("a.json"), &dir.file("b.json"), "-o", &dir.file("fleet.json")]);
    ok(&out);
    let f: Value = serde_json::from_str(&std::fs::read_to_string(dir.path("fleet.json")).unwrap()).unwrap();
    assert_eq!((f["source"].as_str(), f["version"].as_u64()), (Some("merge"), Some(1)));
    for obj in ["vm_area_struct", "anon_vma_chain", "anon_vma"] {
        for side in ["eager", "lazy", "observed"] {
            for k in ["objects", "bytes"] {
                let (x, y, s) = (&a["objects"][obj][side][k], &b["objects"][obj][side][k], &f["objects"][obj][side][k]);
                assert_eq!(n(s), n(x) + n(y), "{obj}.{side}.{k}");
            }
        }
    }
    assert_eq!(n(&f["rules"]["vma_state.lazy"]), n(&a["rules"]["vma_state.lazy"]) + n(&b["rules"]["vma_state.lazy"]));
    // One row per input, the per-process rows of both, a two-point timeline.
    assert_eq!(f["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(f["hosts"][0]["objects"], a["objects"]);
    assert_eq!(f["processes"].as_array().unwrap().len(), a["processes"].as_array().unwrap().len() + b["processes"].as_array().unwrap().len());
    assert_eq!(f["timeline"].as_array().unwrap().len(), 2);
    // Histograms merge exactly: the merged one equals the sum of the two decoded ones.
    for name in ["snapshot_pass_ns", "vma_chain_len"] {
        let (ha, hb, hf) = (decode(&a["histograms"]["series"][name]), decode(&b["histograms"]["series"][name]), decode(&f["histograms"]["series"][name]));
        let mut sum = ha.clone();
        sum.add(&hb).unwrap();
        assert_eq!(hf, sum, "{name}");
        assert_eq!(f["histograms"]["series"][name]["count"].as_u64(), Some(ha.len() + hb.len()));
    }
    // The fleet report: per-host rows plus totals; percentiles from the merged histogram.
    let text = ok(&lazyvma(&["report", &dir.file("fleet.json")]));
    assert!(text.starts_with("lazyvma report: fleet of 1 host (2 inputs)"), "{text}");
    let total = text.lines().find(|l| l.starts_with("TOTAL | ")).expect("TOTAL row");
    let o = &f["objects"];
    assert_eq!(
        total,
        format!(
            "TOTAL |  |  |  | {} | {} | {} | {} | 0",
            kb(&o["anon_vma"]["eager"]["bytes"]),
            kb(&o["anon_vma"]["lazy"]["bytes"]),
            kb(&o["anon_vma_chain"]["eager"]["bytes"]),
            kb(&o["anon_vma_chain"]["lazy"]["bytes"])
        )
    );
    assert_eq!(text.lines().filter(|l| l.contains(" | snapshot | ")).count(), 2, "{text}");
    let pass = decode(&f["histograms"]["series"]["snapshot_pass_ns"]);
    let want = format!(
        "snapshot_pass_ns | ns | 2 | {} | {} | {} | {}",
        pass.value_at_quantile(0.5),
        pass.value_at_quantile(0.9),
        pass.value_at_quantile(0.99),
        pass.max()
    );
    assert!(text.contains(&want), "`{want}` not in:\n{text}");
    // `report A B` renders the same fleet as `report merge(A, B)`.
    let direct = ok(&lazyvma(&["report", &dir.file("a.json"), &dir.file("b.json")]));
    assert_eq!(direct.replace(&dir.file(""), ""), text.replace(&dir.file(""), ""));
}

#[test]
fn bad_input_names_the_file_and_writes_nothing() {
    let dir = Dir::new("bad");
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path(name), text).unwrap();
        dir.file(name)
    };
    let good = write("good.json", &minimal("h1").to_string());
    let mut v2 = minimal("h2");
    v2["version"] = json!(2);
    let mut v0 = minimal("h0");
    v0["version"] = json!(0);
    let mut sig2 = minimal("h3");
    sig2["histograms"]["contract"]["sigfig"] = json!(2);
    let mut knobs = minimal("h4");
    knobs["knobs"]["lazy_enabled"] = json!("false");
    let full = minimal("h5").to_string();
    let cases: Vec<(String, Vec<&str>, &[&str])> = vec![
        (write("text.json", "hello"), vec![], &["text.json", "not JSON"]),
        (write("trunc.json", &full[..full.len() / 2]), vec![], &["trunc.json", "truncated"]),
        (write("empty.json", ""), vec![], &["empty.json", "truncated"]),
        (write("array.json", "[1]"), vec![], &["array.json", "not a lazyvma report"]),
        (write("noschema.json", "{\"a\":1}"), vec![], &["noschema.json", "no `schema`"]),
        (write("v2.json", &v2.to_string()), vec![&good], &["v2.json", "version 2 is newer"]),
        (write("v0.json", &v0.to_string()), vec![], &["v0.json", "unknown report schema version 0"]),
        (write("sig2.json", &sig2.to_string()), vec![&good], &["good.json", "sig2.json", "different histogram contracts"]),
        (write("knobs.json", &knobs.to_string()), vec![&good], &["knobs.json", "lazy_enabled"]),
        (dir.file("missing.json"), vec![], &["missing.json", "cannot read"]),
    ];
    // A histogram built with other bounds than its document's contract.
    let mut h = minimal("h6");
    let other = Histogram::<u64>::new_with_bounds(1, 1000, 2).unwrap();
    let mut buf = Vec::new();
    hdrhistogram::serialization::Serializer::serialize(&mut hdrhistogram::serialization::V2DeflateSerializer::new(), &other, &mut buf).unwrap();
    h["histograms"]["series"]["x_ns"] = json!({"unit": "ns", "count": 0, "encoding": "hdrhistogram-v2-deflate-base64", "data": STANDARD.encode(buf)});
    let hist = write("hist.json", &h.to_string());
    let out_file = dir.path("out.txt");
    std::fs::write(&out_file, "before").unwrap();
    for (file, others, needles) in
        cases.iter().map(|(f, o, n)| (f.clone(), o.clone(), *n)).chain([(hist, vec![], &["hist.json", "not the report's contract"][..])])
    {
        // Bad file last so the good one is read first (mixed-version and contract cases).
        let mut files: Vec<&str> = others.clone();
        files.push(&file);
        for verb in ["report", "merge"] {
            if verb == "report" && !others.is_empty() && !needles.contains(&"version 2 is newer") {
                // A single file alone is fine for contract/knob cases; only the pair is bad.
                let single = lazyvma(&["report", &file]);
                ok(&single);
            }
            let mut args = vec![verb];
            args.extend(&files);
            args.extend(["-o", out_file.to_str().unwrap()]);
            assert_one_line_error(&lazyvma(&args), needles);
            assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "before", "{verb} {file}: -o was touched");
        }
    }
    // The scratch dir holds no temporary left behind.
    let stray: Vec<_> = std::fs::read_dir(&dir.0).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
    assert!(stray.is_empty(), "{stray:?}");
    // Unknown output format: clap's own error, non-zero.
    assert!(!lazyvma(&["report", "-O", "pdf", &good]).status.success());
}

#[test]
fn merge_of_synthetic_hosts_keeps_one_row_each() {
    let dir = Dir::new("synth");
    let (a, b) = (dir.path("a.json"), dir.path("b.json"));
    std::fs::write(&a, minimal("host-a").to_string()).unwrap();
    std::fs::write(&b, minimal("host-b").to_string()).unwrap();
    let out = lazyvma(&["merge", a.to_str().unwrap(), b.to_str().unwrap()]);
    let f: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(f["host"], "fleet of 2 hosts");
    assert_eq!(f["objects"]["anon_vma"]["lazy"], json!({"objects": 4, "bytes": 416}));
    let hosts: Vec<&str> = f["hosts"].as_array().unwrap().iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["host-a", "host-b"]);
    // A merge of merges keeps the leaf rows.
    let fleet = dir.path("fleet.json");
    std::fs::write(&fleet, f.to_string()).unwrap();
    let f2: Value = serde_json::from_str(&ok(&lazyvma(&["merge", fleet.to_str().unwrap(), a.to_str().unwrap()]))).unwrap();
    assert_eq!(f2["hosts"].as_array().unwrap().len(), 3);
    assert_eq!(f2["objects"]["anon_vma"]["eager"]["objects"], 60);
}

/// `lazyvma model FILE --sweep -j` on a shipped scenario: the `rules_that_matter`
/// section of a report (the same keys).
fn sweep_section(scenario: &str, knobs: &[&str]) -> Value {
    let file = format!("{}/../model/scenarios/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["model", &file, "--sweep", "-j"];
    for k in knobs {
        args.extend(["--knob", k]);
    }
    let v: Value = serde_json::from_str(&ok(&lazyvma(&args))).unwrap();
    json!({"eager": v["eager"], "sweep": v["sweep"], "lazy_vma_history": v["lazy_vma_history"]})
}

#[test]
fn rules_that_matter_renders_merges_and_refuses_other_bases() {
    let dir = Dir::new("rules");
    let doc = |host: &str, section: Option<Value>| {
        let mut d = minimal(host);
        if let Some(s) = section {
            d["rules_that_matter"] = s;
        }
        let f = dir.file(&format!("{host}.json"));
        std::fs::write(&f, d.to_string()).unwrap();
        f
    };
    let d = sweep_section("d-fork-chain.lzs", &[]);
    let (a, b) = (doc("a", Some(d.clone())), doc("b", Some(sweep_section("d-fork-chain.lzs", &[]))));

    // Text and markdown: one row per knob value, spec §5 D's numbers.
    let text = ok(&lazyvma(&["report", &a]));
    assert!(text.contains("\nRules that matter: lazy counts under every knob value, the others at base:\n"), "{text}");
    assert!(text.contains("\neager (today) |  |  | 12 | 30 | 12 | 30 | 12 |  | \n"), "{text}");
    assert!(text.contains("\nfork_of_tree_parent | share |  | 3 | 12 | 3 | 12 | 12 | 9 | 18\n"), "{text}");
    assert!(text.contains("\nfork_of_tree_parent | upgrade_first | yes | 9 | 27 | 9 | 27 | 12 | 3 | 3\n"), "{text}");
    assert!(text.contains("\nlazy (all) | 3 | 0\n"), "{text}");
    let md = ok(&lazyvma(&["report", "-O", "markdown", &a]));
    assert!(
        md.contains(
            "## Lazy VMAs before their first share\n\n| Lazy VMAs that were | then shared (fork) | never shared |\n|---|---|---|\n| lazy (all) | 3 | 0 |"
        ),
        "{md}"
    );

    // Merge sums every count; the base marks stay.
    let f: Value = serde_json::from_str(&ok(&lazyvma(&["merge", &a, &b]))).unwrap();
    let r = &f["rules_that_matter"];
    assert_eq!(r["eager"]["anon_vma_chain"], json!({"alloc": 60, "free": 60, "peak": 60}));
    let share = &r["sweep"]["fork_of_tree_parent"]["share"];
    assert_eq!((&share["lazy"]["anon_vma_chain"]["peak"], &share["saved"]["anon_vma_chain_peak"], &share["base"]), (&json!(24), &json!(36), &json!(false)));
    assert_eq!(r["sweep"]["fork_of_tree_parent"]["upgrade_first"]["base"], true);
    assert_eq!(r["lazy_vma_history"]["lazy"], json!({"shared": 6, "never_shared": 0}));

    // An input without a sweep: no partial fleet sum, and a note says why.
    let c = doc("c", None);
    let f: Value = serde_json::from_str(&ok(&lazyvma(&["merge", &a, &b, &c]))).unwrap();
    assert!(f.get("rules_that_matter").is_none(), "{f}");
    assert!(f["notes"].as_array().unwrap().iter().any(|n| n == "rules_that_matter left out: only 2 of 3 inputs have a knob sweep"), "{f}");

    // Sweeps held at another base cannot be added.
    let other = doc("other", Some(sweep_section("d-fork-chain.lzs", &["fork_of_tree_parent=share"])));
    assert_one_line_error(&lazyvma(&["merge", &a, &other]), &["a.json", "other.json", "fork_of_tree_parent"]);
    // A malformed section is a one-line error naming the file.
    let bad = doc("bad", Some(json!({"eager": 1})));
    assert_one_line_error(&lazyvma(&["report", &bad]), &["bad.json"]);
}

/// `data-k="KEY">VALUE<` in the DOM Chromium serialized after loading the page.
fn cell<'a>(dom: &'a str, key: &str) -> &'a str {
    let pat = format!("data-k=\"{key}\">");
    let at = dom.find(&pat).unwrap_or_else(|| panic!("no cell {key}")) + pat.len();
    &dom[at..at + dom[at..].find('<').unwrap()]
}

/// The DOM headless Chromium serializes after loading `dir/name`, with no console message.
fn dom_of(dir: &Dir, name: &str) -> String {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is not installed: run `cargo xtask setup`");
    let profile = dir.path(&format!("profile-{name}"));
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", dir.path(name).display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    // Page console messages (script errors, blocked external loads) are logged as CONSOLE.
    let err = String::from_utf8_lossy(&out.stderr);
    let console: Vec<&str> = err.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console: {console:#?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn html_report_in_headless_chromium() {
    if !root_or_skip("html_report_in_headless_chromium") {
        return;
    }
    let dir = Dir::new("html");
    let w = HeldFork::start(3);
    let a = snapshot_to(&dir.path("a.json"), &["--by-cgroup"]);
    let b = snapshot_to(&dir.path("b.json"), &["--by-cgroup"]);
    drop(w);
    // Issue 5's section, as a source that fed the model events carries it.
    for file in ["a.json", "b.json"] {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.path(file)).unwrap()).unwrap();
        v["rules_that_matter"] = sweep_section("d-fork-chain.lzs", &[]);
        std::fs::write(dir.path(file), v.to_string()).unwrap();
    }
    ok(&lazyvma(&["merge", &dir.file("a.json"), &dir.file("b.json"), "-o", &dir.file("fleet.json")]));
    ok(&lazyvma(&["report", &dir.file("fleet.json"), "-O", "html", "-o", &dir.file("r.html")]));
    let f: Value = serde_json::from_str(&std::fs::read_to_string(dir.path("fleet.json")).unwrap()).unwrap();

    let dom = dom_of(&dir, "r.html");
    assert!(dom.contains("</html>") && dom.contains("lazyvma report: fleet of 1 host (2 inputs)"), "{dom}");
    for id in ["chart-timeline", "chart-savings", "chart-rmap-wait", "chart-hist-vma_chain_len", "chart-sweep-avc", "chart-sweep-av"] {
        assert!(dom.contains(&format!("<svg id=\"{id}\"")), "chart {id} missing");
    }
    // The numbers on the page are the JSON's.
    for obj in ["vm_area_struct", "anon_vma_chain", "anon_vma"] {
        let r = &f["objects"][obj];
        assert_eq!(cell(&dom, &format!("objects.{obj}.before_objects")), n(&r["eager"]["objects"]).to_string());
        assert_eq!(cell(&dom, &format!("objects.{obj}.after_objects")), n(&r["lazy"]["objects"]).to_string());
        assert_eq!(cell(&dom, &format!("objects.{obj}.before_kb")), kb(&r["eager"]["bytes"]));
        assert_eq!(cell(&dom, &format!("objects.{obj}.after_kb")), kb(&r["lazy"]["bytes"]));
    }
    for (i, h) in f["hosts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(cell(&dom, &format!("hosts.{i}.anon_vma_chain.before_kb")), kb(&h["objects"]["anon_vma_chain"]["eager"]["bytes"]));
    }
    assert_eq!(cell(&dom, "hosts.2.host"), "TOTAL");
    assert_eq!(cell(&dom, "histograms.vma_chain_len.count"), f["histograms"]["series"]["vma_chain_len"]["count"].to_string());
    let chains = decode(&f["histograms"]["series"]["vma_chain_len"]);
    assert_eq!(cell(&dom, "histograms.vma_chain_len.p99"), chains.value_at_quantile(0.99).to_string());
    // Timeline: one mark per snapshot and series, at the JSON's values.
    for (p, snap) in f["timeline"].as_array().unwrap().iter().zip([&a, &b]) {
        assert_eq!(p["eager"]["anon_vma"], snap["total"]["eager"]["anon_vma"]);
        let mark = format!("data-series=\"eager anon_vma\" data-value=\"{}\"", p["eager"]["anon_vma"]);
        assert!(dom.contains(&mark), "{mark}");
        let mark = format!("data-series=\"lazy anon_vma_chain\" data-value=\"{}\"", p["lazy"]["anon_vma_chain"]);
        assert!(dom.contains(&mark), "{mark}");
    }
    // Savings bars: one per cgroup row, valued as in the JSON.
    for c in f["cgroups"].as_array().unwrap().iter().take(12) {
        let v = c["saved_kb"].as_f64().unwrap();
        let shown = if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") };
        let label = format!("{}:{}", c["host"].as_str().unwrap(), c["path"].as_str().unwrap());
        assert!(dom.contains(&format!("data-label=\"{label}\" data-value=\"{shown}\"")), "bar {label} {shown}");
    }
    // The knob sweep (the fleet's sum of both inputs): every cell and bar is the JSON's.
    let r = &f["rules_that_matter"];
    assert_eq!(r["eager"]["anon_vma_chain"]["peak"], 60);
    for k in ["anon_vma", "anon_vma_chain"] {
        assert_eq!(cell(&dom, &format!("rules_that_matter.eager.{k}.peak")), r["eager"][k]["peak"].to_string());
    }
    let mut rows = 0;
    for (knob, values) in r["sweep"].as_object().unwrap() {
        for (value, row) in values.as_object().unwrap() {
            let at = format!("rules_that_matter.sweep.{knob}.{value}");
            for k in ["anon_vma", "anon_vma_chain"] {
                for c in ["alloc", "peak"] {
                    assert_eq!(cell(&dom, &format!("{at}.lazy.{k}.{c}")), row["lazy"][k][c].to_string(), "{at}.lazy.{k}.{c}");
                }
                let saved = &row["saved"][format!("{k}_peak")];
                assert_eq!(cell(&dom, &format!("{at}.saved.{k}_peak")), saved.to_string());
                assert!(dom.contains(&format!("data-label=\"{knob}={value}\" data-value=\"{saved}\"")), "bar {knob}={value} {k}");
            }
            assert_eq!(cell(&dom, &format!("{at}.lazy.vm_area_struct.peak")), row["lazy"]["vm_area_struct"]["peak"].to_string());
            assert_eq!(cell(&dom, &format!("{at}.base")), if row["base"] == true { "yes" } else { "" });
            rows += 1;
        }
    }
    assert_eq!(rows, 27);
    for (what, o) in r["lazy_vma_history"].as_object().unwrap() {
        for c in ["shared", "never_shared"] {
            assert_eq!(cell(&dom, &format!("rules_that_matter.lazy_vma_history.{what}.{c}")), o[c].to_string());
        }
    }
}

/// `/sys/kernel/slab/CACHE/FILE` as a number.
fn slab(cache: &str, file: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/kernel/slab/{cache}/{file}")).unwrap().trim().parse().unwrap()
}

/// One size source (issue 11): snapshot, trace, a replay of that trace and the report of
/// each price an object at its slab slot (`kmem_cache.size`: 104 B for anon_vma on x86_64,
/// its 96 B object's free pointer outside it) with the same source string, while trace
/// tells kinds by object_size. serve's gauges are checked in tests/serve.rs.
#[test]
fn every_command_prices_an_object_at_its_slab_slot() {
    if !root_or_skip("every_command_prices_an_object_at_its_slab_slot") {
        return;
    }
    let dir = Dir::new("sizes");
    let snap = snapshot_to(&dir.path("s.json"), &["--top", "0"]);
    let rec = dir.file("t.lzv");
    let cmd = format!("{WORKLOAD} fork -n 3 >/dev/null");
    let trace: Value = serde_json::from_str(&ok(&lazyvma(&["trace", "-j", "-o", &rec, "--", "sh", "-c", &cmd]))).unwrap();
    let replay: Value = serde_json::from_str(&ok(&lazyvma(&["replay", "-j", &rec]))).unwrap();
    std::fs::write(dir.path("t.json"), trace.to_string()).unwrap();
    let report = |f: &str| -> Value { serde_json::from_str(&ok(&lazyvma(&["report", "-O", "json", &dir.file(f)]))).unwrap() };
    let (snap_doc, trace_doc) = (report("s.json"), report("t.json"));
    for cache in ["anon_vma", "anon_vma_chain"] {
        let want = json!({
            "object_size": slab(cache, "object_size"),
            "slab_size": slab(cache, "slab_size"),
            "source": format!("/sys/kernel/slab/{cache}/slab_size"),
        });
        for (what, v) in [("snapshot -j", &snap), ("trace -j", &trace), ("replay -j", &replay)] {
            assert_eq!(v["sizes"][cache], want, "{what}: sizes.{cache}");
        }
        for (what, d) in [("snapshot", &snap_doc), ("trace", &trace_doc)] {
            let row = &d["objects"][cache];
            assert_eq!((&row["size"], &row["size_source"]), (&want["slab_size"], &want["source"]), "report of {what}: objects.{cache}");
        }
        // The trace's bytes are its allocations at the slot, as the snapshot's are its objects at the slot.
        let observed = &trace_doc["objects"][cache]["observed"];
        assert_eq!(n(&observed["bytes"]), n(&observed["objects"]) * n(&want["slab_size"]));
    }
    // This host (6.18 x86_64, spec §4.3): the two anon_vma numbers differ, and trace counted
    // allocations by the object's (so it saw some: the workload's 3 written VMAs at least).
    if std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().starts_with("6.18.") && std::env::consts::ARCH == "x86_64" {
        assert_eq!((slab("anon_vma", "object_size"), slab("anon_vma", "slab_size")), (96, 104));
    }
    assert!(n(&trace["observed"]["anon_vma"]["alloc"]) >= 3, "{}", trace["observed"]);
    // The text says the same bytes and source.
    let text = ok(&lazyvma(&["replay", &rec]));
    let line = format!("bytes per slab slot: anon_vma {} B (/sys/kernel/slab/anon_vma/slab_size)", slab("anon_vma", "slab_size"));
    assert!(text.contains(&line), "`{line}` not in:\n{text}");
}

#[test]
fn report_of_a_real_trace() {
    if !root_or_skip("report_of_a_real_trace") {
        return;
    }
    let dir = Dir::new("trace");
    let cmd = format!("{WORKLOAD} fork -n 3 >/dev/null");
    let text = ok(&lazyvma(&["trace", "-j", "--report", &dir.file("r.json"), "--", "sh", "-c", &cmd]));
    std::fs::write(dir.path("t.json"), &text).unwrap();
    let t: Value = serde_json::from_str(&text).unwrap();
    let doc: Value = serde_json::from_str(&ok(&lazyvma(&["report", "-O", "json", &dir.file("t.json")]))).unwrap();
    // trace --report writes the document `report` makes of its -j output.
    let written: Value = serde_json::from_str(&std::fs::read_to_string(dir.path("r.json")).unwrap()).unwrap();
    assert_eq!(written, doc, "trace --report vs report -O json of trace -j");
    let out = lazyvma(&["trace", "--report", "/nonexistent/dir/r.json", "--", "true"]);
    assert_one_line_error(&out, &["--report", "/nonexistent/dir"]);
    assert_eq!((doc["source"].as_str(), doc["lost_events"].clone()), (Some("trace"), t["lost_events"].clone()));
    for obj in ["anon_vma", "anon_vma_chain"] {
        let side = &doc["objects"][obj]["observed"];
        assert_eq!(side["allocs"], t["observed"][obj]["alloc"]);
        assert_eq!(side["frees"], t["observed"][obj]["free"]);
        assert_eq!(n(&side["bytes"]), n(&side["objects"]) * n(&t["sizes"][obj]["slab_size"]));
    }
    // A command's trace feeds the model: its sides are the trace's, and eager == observed.
    assert!(!t["eager"].is_null() && !t["lazy"].is_null(), "a command's trace feeds the model: {}", t["model"]);
    assert_eq!(t["eager"], t["observed"], "model eager == observed: {}", t["model"]);
    model_side(&t, "eager", &doc);
    model_side(&t, "lazy", &doc);
    assert!(doc["rules_that_matter"]["sweep"].is_object(), "the knob sweep over the fed events: {}", doc["rules_that_matter"]);
    // Spec §5 B: at least the 3 test VMAs' +3 AV at touch and +3 AV at fork.
    assert!(n(&doc["objects"]["anon_vma"]["observed"]["allocs"]) >= 6);
    let report = ok(&lazyvma(&["report", &dir.file("t.json")]));
    assert!(report.contains("Before = today's kernel (EAGER)"), "{report}");
    // Held-now and allocated-over-time counts do not add up.
    let a = dir.path("a.json");
    snapshot_to(&a, &[]);
    let out = lazyvma(&["merge", a.to_str().unwrap(), &dir.file("t.json")]);
    assert_one_line_error(&out, &["a.json", "t.json", "snapshot report", "trace report"]);
}

/// The trace's `{anon_vma, anon_vma_chain}` model side, as the report's sides must show it.
fn model_side(t: &Value, side: &str, doc: &Value) {
    for obj in ["anon_vma", "anon_vma_chain"] {
        let got = &doc["objects"][obj][side];
        if t[side].is_null() {
            assert!(got.is_null(), "{side}.{obj}: {got}");
        } else {
            assert_eq!((&got["allocs"], &got["frees"]), (&t[side][obj]["alloc"], &t[side][obj]["free"]), "{side}.{obj}");
        }
    }
}

/// `trace -j --by-cgroup --stats -o` of the contend workload, its replay, both through
/// `report`: lock waits, cgroup rows, --stats, the timeline and the recording carried, and
/// the HTML page showing the JSON's numbers.
#[test]
fn report_of_a_real_contended_trace_by_cgroup_and_its_replay() {
    if !root_or_skip("report_of_a_real_contended_trace_by_cgroup_and_its_replay") {
        return;
    }
    let dir = Dir::new("rtrace");
    let cmd = format!("{WORKLOAD} contend >/dev/null");
    let rec = dir.file("c.rec");
    let args = ["trace", "-j", "--by-cgroup", "--stats", "--ringbuf-mb", "64", "-i", "200ms", "-o", &rec, "--", "sh", "-c", &cmd];
    let text = ok(&lazyvma(&args));
    std::fs::write(dir.path("t.json"), &text).unwrap();
    let t: Value = serde_json::from_str(&text).unwrap();
    let doc: Value = serde_json::from_str(&ok(&lazyvma(&["report", "-O", "json", &dir.file("t.json")]))).unwrap();
    assert_eq!((doc["source"].as_str(), doc["host"].as_str(), doc["arch"].as_str()), (Some("trace"), t["host"].as_str(), Some(std::env::consts::ARCH)));
    assert_eq!(doc["span"]["start_unix_ms"], t["start_unix_ms"]);
    // Lost records are counted, ring buffer and lock records alike.
    assert_eq!(n(&doc["lost_events"]), n(&t["lost_events"]) + n(&t["locks"]["lost"]));

    // Lock waits: the histogram under the contract with the trace's count, and its counters.
    let locks = &t["locks"];
    assert_eq!(locks["available"], true, "{locks}");
    let h = &doc["histograms"]["series"]["anon_vma_lock_wait_ns"];
    assert_eq!(h["count"], locks["wait_ns"]["count"]);
    let hist = decode(h);
    assert_eq!(Value::from(hist.len()), locks["wait_ns"]["count"]);
    assert_eq!((Value::from(hist.max()), Value::from(hist.value_at_quantile(0.5))), (locks["wait_ns"]["max"].clone(), locks["wait_ns"]["p50"].clone()));
    assert_eq!(doc["rmap"]["lock_wait_events"], locks["contentions"]);
    for k in ["contentions", "read", "write", "paired", "unpaired_begins", "unpaired_ends", "via_owner"] {
        assert_eq!(doc["rules"][format!("locks.{k}")], locks[k], "locks.{k}");
    }

    // Cgroup rows: one per trace row, observed counts as traced, model columns as fed.
    let rows = t["by_cgroup"].as_array().unwrap();
    let cgs = doc["cgroups"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert_eq!(cgs.len(), rows.len());
    for (c, r) in cgs.iter().zip(rows) {
        assert_eq!((&c["path"], &c["id"], &c["processes"]), (&r["path"], &r["id"], &r["processes"]));
        for obj in ["anon_vma", "anon_vma_chain"] {
            assert_eq!(c["observed"][obj], r[obj], "{}: {obj}", r["path"]);
        }
        assert_eq!(c["eager"].is_null(), r["eager"].is_null());
    }
    let sum = |k: &str| rows.iter().map(|r| n(&r[k]["alloc"])).sum::<i64>();
    assert_eq!((sum("anon_vma"), sum("anon_vma_chain")), (n(&t["observed"]["anon_vma"]["alloc"]), n(&t["observed"]["anon_vma_chain"]["alloc"])));
    model_side(&t, "eager", &doc);
    model_side(&t, "lazy", &doc);
    if t["eager"].is_null() {
        assert!(doc["notes"].as_array().unwrap().iter().any(|x| x.as_str().unwrap().starts_with("model not fed")), "{}", doc["notes"]);
    }

    // --stats: every program's runs and mean.
    assert!(!t["bpf_stats"].as_object().unwrap().is_empty());
    assert_eq!(doc["bpf_stats"], t["bpf_stats"]);

    // Timeline: one point per trace point, at wall-clock times; the last is the final count.
    let tl = doc["timeline"].as_array().unwrap();
    let tt = t["timeline"].as_array().unwrap();
    assert!(tl.len() >= 2, "a 1 s workload at -i 200ms: {tl:?}");
    assert_eq!(tl.len(), tt.len());
    for (p, q) in tl.iter().zip(tt) {
        assert_eq!(n(&p["t_unix_ms"]), n(&t["start_unix_ms"]) + n(&q["t_ms"]));
        assert_eq!(p["observed"], q["observed_live"]);
    }
    let last = &tl.last().unwrap()["observed"];
    for obj in ["anon_vma", "anon_vma_chain"] {
        assert_eq!(n(&last[obj]), n(&t["observed"][obj]["alloc"]) - n(&t["observed"][obj]["free"]), "{obj}");
    }
    let times: Vec<i64> = tt.iter().map(|q| n(&q["t_ms"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[times.len() - 1] >= n(&t["elapsed_ms"]), "{times:?}");

    // The replay: the same report, from a named recording, the same timeline.
    let r = ok(&lazyvma(&["replay", "-j", &rec]));
    std::fs::write(dir.path("r.json"), &r).unwrap();
    let rj: Value = serde_json::from_str(&r).unwrap();
    let rdoc: Value = serde_json::from_str(&ok(&lazyvma(&["report", "-O", "json", &dir.file("r.json")]))).unwrap();
    assert_eq!(rdoc["source"], "replay");
    assert_eq!(rdoc["recording"], rj["recording"]);
    assert_eq!(rdoc["recording"]["complete"], true);
    for k in ["timeline", "objects", "histograms", "lost_events", "host", "span", "lazy_rules"] {
        assert_eq!(rdoc[k], doc[k], "replay: {k}");
    }
    // A trace and its replay count the same way: they merge.
    ok(&lazyvma(&["merge", &dir.file("t.json"), &dir.file("r.json")]));

    // The page shows the JSON's numbers.
    ok(&lazyvma(&["report", &dir.file("t.json"), "-O", "html", "-o", &dir.file("t.html")]));
    let dom = dom_of(&dir, "t.html");
    for id in ["chart-timeline", "chart-lock-wait", "chart-rmap-wait"] {
        assert!(dom.contains(&format!("<svg id=\"{id}\"")), "chart {id} missing");
    }
    assert_eq!(cell(&dom, "histograms.anon_vma_lock_wait_ns.count"), h["count"].to_string());
    assert_eq!(cell(&dom, "histograms.anon_vma_lock_wait_ns.max"), hist.max().to_string());
    assert_eq!(cell(&dom, "lost_events"), doc["lost_events"].to_string());
    for obj in ["anon_vma", "anon_vma_chain"] {
        let before = if t["eager"].is_null() { "observed" } else { "eager" };
        assert_eq!(cell(&dom, &format!("objects.{obj}.before_objects")), doc["objects"][obj][before]["objects"].to_string());
        let mark = format!("data-series=\"observed {obj}\" data-value=\"{}\"", last[obj]);
        assert!(dom.contains(&mark), "{mark}");
    }
    for (i, c) in cgs.iter().enumerate().take(10) {
        assert_eq!(cell(&dom, &format!("cgroups.{i}.path")), c["path"].as_str().unwrap());
        let before = if c["eager"].is_null() { &c["observed"]["anon_vma_chain"]["alloc"] } else { &c["eager"]["anon_vma_chain"] };
        assert_eq!(cell(&dom, &format!("cgroups.{i}.before.anon_vma_chain")), before.to_string());
    }
    // The lazy rules that fired, with their tags, as the trace counted them.
    assert_eq!(doc["lazy_rules"], t["lazy_rules"]);
    for (rule, r) in t["lazy_rules"].as_object().into_iter().flatten().filter(|(_, r)| r["fired"] != 0) {
        assert_eq!(cell(&dom, &format!("lazy_rules.{rule}.fired")), r["fired"].to_string());
        assert_eq!(cell(&dom, &format!("lazy_rules.{rule}.status")), r["status"].as_str().unwrap());
    }
    for (prog, s) in doc["bpf_stats"].as_object().unwrap() {
        assert_eq!(cell(&dom, &format!("bpf_stats.{prog}.runs")), s["runs"].to_string());
    }
    let text = ok(&lazyvma(&["report", &dir.file("r.json")]));
    assert!(text.contains(&format!("anon_vma root rwsem waits: {}", locks["contentions"])), "{text}");
    assert!(text.contains(&format!("Recording:\n{rec} (format 3.2, ")), "{text}");
}
