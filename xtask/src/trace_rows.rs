//! A `lazyvma trace -j` report's (process, phase) rows as the suites judge them: what the
//! slab saw, and what it would have seen were the model exact.
use serde_json::Value;

/// [+AV, -AV, +AVC, -AVC] of a `{anon_vma: {alloc, free}, anon_vma_chain: {..}}` (absent = 0).
pub fn counts(v: &Value) -> [i64; 4] {
    let g = |o: &str, k: &str| v[o][k].as_i64().unwrap_or(0);
    [g("anon_vma", "alloc"), g("anon_vma", "free"), g("anon_vma_chain", "alloc"), g("anon_vma_chain", "free")]
}

/// What the row's observed counts are when the model is exact: eager + a lost prepare
/// race's spares + what a seeded process did before its seed. None: the model did not
/// follow the row's process.
pub fn expected(row: &Value) -> Option<[i64; 4]> {
    row["eager"].is_object().then(|| {
        let [e, s, b] = ["eager", "prepare_race_spares", "before_seed"].map(|k| counts(&row[k]));
        std::array::from_fn(|i| e[i] + s[i] + b[i])
    })
}
