//! SIGINT / SIGTERM as a request to stop the long parts of a command (trace's loop, a
//! replay's record pass, the knob sweep), counted: a part started after one signal
//! (trace's own stop) stops at the next.
use std::sync::atomic::{AtomicU32, Ordering};

static SIGNALS: AtomicU32 = AtomicU32::new(0);

pub fn count() -> u32 {
    SIGNALS.load(Ordering::SeqCst)
}

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Count SIGINT and SIGTERM instead of dying of them, even where they were ignored at
/// start (a backgrounded job): the command then stops at its next check, cleanly.
pub fn catch() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only bumps an atomic; no SA_RESTART, so trace's poll wakes up.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
