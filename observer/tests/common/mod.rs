//! What the privileged integration tests share.

/// True when running as root. Otherwise the test is skipped with a line on stderr, unless
/// the suite demands root (`LAZYVMA_REQUIRE_ROOT=1`, set by `cargo xtask test`): then it fails.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("LAZYVMA_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: LAZYVMA_REQUIRE_ROOT=1 but not running as root");
    }
    eprintln!("{test}: skipped (needs root)");
    false
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}
