//! `lazyvma model FILE`: a scenario parsed, then run on each kernel's rules. Errors are
//! fine; a panic, a hang or an unbounded allocation is the bug.
#![no_main]
use lazyvma_model::{kernel::Kernel, scenario};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(sc) = scenario::parse("fuzz.lzs", text) else { return };
    let _ = scenario::run(&sc, None, &[]);
    let _ = scenario::run(&sc, Some(Kernel::Pre6_0), &[]);
});
