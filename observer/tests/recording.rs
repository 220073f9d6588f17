//! `trace -o` and `replay` on the real kernel: a replay as nobody prints what the live
//! trace printed; a cut recording replays its complete chunks and says what was lost; a
//! damaged one is a one-line error.
use serde_json::Value;
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");
/// Records chunks, LZ4 (format 3.0).
const RECORDS: u8 = 6;

/// The JSON object after the command's own output on stdout.
fn report(stdout: &[u8]) -> Value {
    let s = String::from_utf8_lossy(stdout);
    let at = if s.starts_with('{') { 0 } else { s.find("\n{").map_or(s.len(), |i| i + 1) };
    serde_json::from_str(&s[at..]).unwrap_or_else(|e| panic!("no JSON report ({e}): {s}"))
}

/// `lazyvma replay ARGS` as uid 65534: a replay needs no privilege.
fn replay(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    Command::new(BIN).arg("replay").args(args).uid(65534).gid(65534).output().expect("running lazyvma replay")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// (offset, kind, end) of each chunk.
fn chunks(d: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut v = vec![];
    let mut p = 12;
    while p + 9 <= d.len() {
        let end = p + 8 + u32::from_le_bytes(d[p..p + 4].try_into().unwrap()) as usize;
        if end > d.len() {
            break;
        }
        v.push((p, d[p + 8], end));
        p = end;
    }
    v
}

fn cut_warning(chunk: usize, lost: usize) -> String {
    format!("lazyvma: recording cut short after chunk {chunk}: {lost} bytes lost (no trailer: the end reason and lost-event counters are unknown)")
}

/// Record a real trace, then replay it whole, cut and damaged.
#[test]
fn replay_prints_the_live_report_and_survives_cuts_and_damage() {
    if !root_or_skip("replay_prints_the_live_report_and_survives_cuts_and_damage") {
        return;
    }
    let dir = Dir::new("recording");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let f = dir.file("fork.rec");
    let out = Command::new(BIN).args(["trace", "-j", "-o", &f, "--", WORKLOAD, "fork", "-n", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let live = report(&out.stdout);
    let data = std::fs::read(&f).unwrap();
    let received = live["events"]["received"].as_u64().unwrap();
    assert!(received > 0 && live["events"]["sent"] == received);
    assert!(stderr(&out).contains(&format!("lazyvma: recording {f}: {received} records in ")), "{}", stderr(&out));

    // Whole: the same report; only "recording" (where it came from) is added.
    let out = replay(&["-j", &f]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let mut again = report(&out.stdout);
    let rec = again.as_object_mut().unwrap().remove("recording").expect("a recording field");
    assert_eq!(again, live);
    let cs = chunks(&data);
    assert_eq!(rec["complete"], true);
    assert_eq!(rec["records"], received);
    assert_eq!((rec["bytes"].as_u64(), rec["chunks"].as_u64(), rec["lost_bytes"].as_u64()), (Some(data.len() as u64), Some(cs.len() as u64), Some(0)));
    assert_eq!(cs.last().unwrap().2, data.len());
    // Text too, with the source on the last line.
    let out = replay(&[&f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim_end().ends_with(&format!("recording: {f} ({received} records in {} chunks, {} bytes, format 3.2), complete", cs.len(), data.len())),
        "{text}"
    );

    // Cut: at the last chunk boundary (the trailer lost), inside the last records chunk, and
    // one byte short of the end.
    let last_records = cs.iter().rposition(|c| c.1 == RECORDS).expect("a records chunk");
    let trailer_at = cs.last().unwrap().0;
    let mid = (cs[last_records].0 + cs[last_records].2) / 2;
    for (cut, complete_chunks, all) in [(trailer_at, cs.len() - 1, true), (mid, last_records, false), (data.len() - 1, cs.len() - 1, true)] {
        let c = dir.file(&format!("cut-{cut}.rec"));
        std::fs::write(&c, &data[..cut]).unwrap();
        let out = replay(&["-j", &c]);
        assert!(out.status.success(), "cut at {cut}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim_end(), cut_warning(complete_chunks, cut - cs[complete_chunks - 1].2));
        let j = report(&out.stdout);
        assert_eq!(
            (j["recording"]["complete"].clone(), j["ended_by"].clone(), j["lost_events"].clone()),
            (Value::Bool(false), "recording cut short".into(), Value::Null)
        );
        assert_eq!(j["events"]["sent"], Value::Null);
        let got = j["events"]["received"].as_u64().unwrap();
        if all {
            // Every record survived: the counts are the live ones.
            assert_eq!(got, received);
            for k in ["observed", "by_function", "by_reason", "phases", "processes", "live_objects", "launcher_frees"] {
                assert_eq!(j[k], live[k], "cut at {cut}: {k}");
            }
        } else {
            assert!(got < received, "cut at {cut}: {got} of {received}");
        }
    }
    // Cut inside the header: nothing to replay.
    let c = dir.file("cut-header.rec");
    std::fs::write(&c, &data[..40]).unwrap();
    let out = replay(&[&c]);
    assert_eq!(
        (out.status.code(), stderr(&out).trim_end()),
        (Some(1), format!("lazyvma: recording {c}: no complete header chunk (cut short?) at offset 12").as_str())
    );

    // Damage in the middle: one byte of the first records chunk.
    let first = cs.iter().find(|c| c.1 == RECORDS).unwrap();
    let mut bad = data.clone();
    bad[first.0 + 8 + 100] ^= 0x10;
    let b = dir.file("flipped.rec");
    std::fs::write(&b, &bad).unwrap();
    let out = replay(&["-j", &b]);
    let index = cs.iter().position(|c| c == first).unwrap() + 1;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim_end(), format!("lazyvma: recording {b}: chunk {index} fails its crc at offset {}", first.0));
    assert!(out.stdout.is_empty());

    // Flips and cuts all over the real file: exit 0 (a cut) or 1, one line, never a panic.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x % data.len() as u64) as usize;
        let mut d = data.clone();
        if i % 2 == 0 {
            d.truncate(at);
        } else {
            d[at] ^= 1 << (x >> 60 & 7);
        }
        std::fs::write(&b, &d).unwrap();
        let out = replay(&["-j", &b]);
        let err = stderr(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{i} at {at}: {err}");
        assert!(!err.contains("panicked") && err.lines().count() <= 1, "{i} at {at}: {err}");
    }
    assert!(Path::new(&f).exists());
}

#[test]
fn replay_refuses_bad_input() {
    let dir = Dir::new("replay-bad");
    let missing = dir.file("none.rec");
    let out = Command::new(BIN).args(["replay", &missing]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with(&format!("lazyvma: cannot read recording {missing}: ")), "{}", stderr(&out));
    let junk = dir.file("junk.rec");
    std::fs::write(&junk, "{\"not\": \"a recording\"}\n").unwrap();
    let out = Command::new(BIN).args(["replay", &junk]).output().unwrap();
    assert_eq!(
        (out.status.code(), stderr(&out).trim_end()),
        (Some(1), format!("lazyvma: recording {junk}: not a lazyvma recording (bad magic) at offset 0").as_str())
    );
    let out = Command::new(BIN).args(["replay", "--knob", "nope=1", &junk]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

/// kill -9 of a live `trace -o` mid-run: the recording replays up to its last chunk.
#[test]
fn a_killed_trace_leaves_a_replayable_recording() {
    if !root_or_skip("a_killed_trace_leaves_a_replayable_recording") {
        return;
    }
    let dir = Dir::new("killed");
    let f = dir.file("killed.rec");
    let mut trace = Command::new(BIN)
        .args(["trace", "-i", "50ms", "-o", &f, "--", WORKLOAD, "fork-chain", "-n", "3", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(trace.stdout.take().unwrap()).lines();
    let mut ready = 0;
    while ready < 4 {
        let l = lines.next().expect("trace exited before the workload was ready").unwrap();
        ready += l.contains("ready role=") as usize;
    }
    // Everything up to "ready" is in a records chunk one interval (50 ms) after it was
    // read from the ring buffer; 1 s leaves room for a loaded machine.
    std::thread::sleep(Duration::from_secs(1));
    assert!(chunks(&std::fs::read(&f).unwrap()).iter().any(|c| c.1 == RECORDS), "no records chunk after 1 s");
    trace.kill().unwrap();
    trace.wait().unwrap();
    // EOF on the held workload's stdin: it exits (reparented, reaped by init).
    drop(trace.stdin.take());
    let out = replay(&["-j", &f]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.starts_with("lazyvma: recording cut short after chunk "), "{err}");
    let j = report(&out.stdout);
    assert_eq!(j["recording"]["complete"], false);
    assert_eq!(j["ended_by"], "recording cut short");
    // P→C1→C2→C3: three forks of (at least) the 3 written test VMAs, all before "ready".
    let forked = j["by_reason"]["fork"]["anon_vma"]["alloc"].as_u64().unwrap_or(0);
    assert!(forked >= 9, "{j}");
    assert_eq!(j["processes"].as_array().map(Vec::len), Some(4), "{j}");
}

#[test]
fn trace_refuses_an_unwritable_recording_before_attaching() {
    if !root_or_skip("trace_refuses_an_unwritable_recording_before_attaching") {
        return;
    }
    let out = Command::new(BIN).args(["trace", "-o", "/nonexistent/x.rec", "--", "true"]).output().unwrap();
    assert_eq!(
        (out.status.code(), stderr(&out).trim_end()),
        (Some(1), "lazyvma: cannot create recording /nonexistent/x.rec: No such file or directory (os error 2)")
    );
}

/// `trace -j`'s document, read into `report::trace_doc::TraceDoc` and printed again, is the
/// same bytes: every key the tracer writes is a typed field, absent and `null` told apart.
/// Live (with the lock, cgroup, `--stats`, `--ops` and `--model-events` sections), its
/// replay (`recording`), a replay cut short (`null` end counts, no trailer) and a seeded
/// `-p` trace (the model's seed sections).
#[test]
fn the_trace_document_round_trips_through_its_types() {
    if !root_or_skip("the_trace_document_round_trips_through_its_types") {
        return;
    }
    use lazyvma::report::trace_doc::TraceDoc;
    let same = |what: &str, stdout: &[u8]| {
        let s = String::from_utf8_lossy(stdout);
        let at = if s.starts_with('{') { 0 } else { s.find("\n{").map_or(s.len(), |i| i + 1) };
        let doc: TraceDoc = serde_json::from_str(&s[at..]).unwrap_or_else(|e| panic!("{what}: not a TraceDoc ({e}): {s}"));
        let again = lazyvma::escape::json_pretty(&doc.to_json().unwrap()).unwrap();
        assert_eq!(again.trim_end(), s[at..].trim_end(), "{what}: printed again differently");
        // And the report document it makes.
        doc.report().unwrap_or_else(|e| panic!("{what}: no report document: {e}"));
    };
    let dir = Dir::new("roundtrip");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let f = dir.file("chain.rec");
    let args = ["trace", "-j", "--ops", "--stats", "--by-cgroup", "--model-events", "-o", &f, "--", WORKLOAD, "fork-chain", "-n", "3"];
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    same("live trace", &out.stdout);
    let out = replay(&["-j", "--ops", &f]);
    assert!(out.status.success(), "{}", stderr(&out));
    same("replay", &out.stdout);
    let data = std::fs::read(&f).unwrap();
    let cs = chunks(&data);
    let c = dir.file("cut.rec");
    std::fs::write(&c, &data[..cs.last().unwrap().0]).unwrap();
    let out = replay(&["-j", &c]);
    assert!(out.status.success(), "{}", stderr(&out));
    same("replay cut short", &out.stdout);
    // -p: a held process seeded from the snapshot at the start.
    let held = HeldFork::start(3);
    let pid = held.parent.to_string();
    let out = Command::new(BIN).args(["trace", "-j", "-p", &pid, "-d", "300ms"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    same("trace -p", &out.stdout);
}

/// The same recording replays to the same model events, run after run: records of several
/// mms leave the feed's per-mm queues in key order, not in a randomly seeded map's order
/// (`trace::feed::order`). `contend`: 32 children forking, splitting and exiting at once.
#[test]
fn a_replay_of_many_mms_is_deterministic() {
    if !root_or_skip("a_replay_of_many_mms_is_deterministic") {
        return;
    }
    let dir = Dir::new("deterministic");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let f = dir.file("contend.rec");
    let out = Command::new(BIN).args(["trace", "-j", "-o", &f, "--", WORKLOAD, "contend"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let runs: Vec<Output> = (0..2).map(|_| replay(&["-j", "--model-events", &f])).collect();
    for o in &runs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    let j = report(&runs[0].stdout);
    let procs: std::collections::BTreeSet<u64> = j["model"]["events"].as_array().unwrap().iter().filter_map(|e| e["proc"].as_u64()).collect();
    assert!(procs.len() > 10, "a recording of many mms: {procs:?}");
    assert!(runs[0].stdout == runs[1].stdout, "two replays of {f} printed different model events");
}
