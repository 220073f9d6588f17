//! `lazyvma report FILE` / `merge A B`: a report (or `trace -j`) JSON loaded, its histograms
//! decoded under their contract, and merged with itself (sums, histogram adds).
#![no_main]
#![allow(dead_code)]

#[path = "../../observer/src/escape.rs"]
mod escape;
#[path = "../../observer/src/safe_out.rs"]
mod safe_out;
#[path = "../../observer/src/report"]
mod report {
    pub mod hist;
    pub mod lazy_rules;
    pub mod load;
    pub mod merge;
    pub mod render_html;
    pub mod render_rules;
    pub mod render_text;
    pub mod schema;
    pub mod svg;
    pub mod trace_doc;
}

use report::render_text::{render, Style};

/// Every way `report` shows a document: no control character but newline reaches a terminal.
fn show(d: &report::schema::Doc) {
    for (style, name) in [(Style::Text, "text"), (Style::Markdown, "markdown")] {
        let t = render(d, style, 20);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "a control character in the {name} output:\n{t}");
    }
    let _ = report::render_html::render(d, 20);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let path = std::path::Path::new("fuzz.json");
    let Ok(doc) = report::load::from_value(path, value) else { return };
    show(&doc);
    let docs = vec![("a.json".to_string(), doc.clone()), ("b.json".to_string(), doc)];
    if let Ok(m) = report::merge::merge(&docs) {
        // What `merge -o` writes must load again.
        let v = serde_json::to_value(&m).expect("a merged report serialises");
        let again = report::load::from_value(path, v).expect("a merged report loads again");
        show(&again);
    }
});
