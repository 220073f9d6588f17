//! The Prometheus text format 0.0.4, rendered from our OpenMetrics exposition, for clients
//! that ask for `text/plain` (promtool, older tools). OpenMetrics names a counter family
//! without `_total` and its samples with it; the text format names both with it, so a text
//! parser would see help-less untyped `_total` families in the OpenMetrics form.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `om`: an exposition of `prometheus_client::encoding::text::encode` (counters, gauges,
/// histograms; no info, stateset or exemplars).
pub fn from_openmetrics(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                k => (name.to_string(), k),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out += &format!("# HELP {name} {text}\n");
            }
            out += &format!("# TYPE {name} {kind}\n");
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out += line;
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_openmetrics_lines_go() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total{f=\"p\"} 3\n# HELP a_b Size.\n# TYPE a_b gauge\n# UNIT a_b bytes\na_b 7\n# HELP a_d D.\n# TYPE a_d histogram\n# UNIT a_d seconds\na_d_sum 0.5\na_d_count 1\na_d_bucket{le=\"+Inf\"} 1\n# EOF\n";
        let want = "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total{f=\"p\"} 3\n# HELP a_b Size.\n# TYPE a_b gauge\na_b 7\n# HELP a_d D.\n# TYPE a_d histogram\na_d_sum 0.5\na_d_count 1\na_d_bucket{le=\"+Inf\"} 1\n";
        assert_eq!(from_openmetrics(om), want);
    }
}
