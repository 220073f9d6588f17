//! Small self-contained SVG charts (no script, no external resources). Every mark carries
//! its number in `data-value` so a test can compare the drawing with the JSON.
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 240.0;
const PAD: f64 = 48.0;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn open(id: &str, title: &str) -> String {
    format!(
        "<svg id=\"{id}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">\
         <title>{}</title><line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#888\"/>",
        esc(title),
        H - PAD,
        W - PAD / 2.0,
        H - PAD,
        H - PAD
    )
}

fn y_axis(o: &mut String, max: f64) {
    y_range(o, 0.0, max);
}

fn y_range(o: &mut String, min: f64, max: f64) {
    let _ = write!(o, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>", PAD - 4.0, PAD + 4.0, fmt(max));
    let _ = write!(o, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>", PAD - 4.0, H - PAD, fmt(min));
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn empty(o: &mut String, why: &str) {
    let _ = write!(o, "<text class=\"absent\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>", W / 2.0, H / 2.0, esc(why));
}

pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    /// (x, y); x in any unit, scaled to the plot.
    pub points: Vec<(f64, f64)>,
}

/// Lines over x; a single x is drawn in the middle.
pub fn lines(id: &str, title: &str, x_label: &str, series: &[Series<'_>]) -> String {
    let mut o = open(id, title);
    let pts = series.iter().flat_map(|s| &s.points);
    let (xmin, xmax) = pts.clone().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = pts.clone().fold(0.0f64, |m, p| m.max(p.1)).max(1.0);
    // A trace's observed live count goes below zero when it frees more older objects than it allocates.
    let ymin = pts.clone().fold(0.0f64, |m, p| m.min(p.1));
    if xmin > xmax {
        empty(&mut o, "no data");
        return o + "</svg>";
    }
    let sx = |x: f64| if xmax > xmin { PAD + (x - xmin) / (xmax - xmin) * (W - 1.5 * PAD) } else { (W + PAD / 2.0) / 2.0 };
    let sy = |y: f64| H - PAD - (y - ymin) / (ymax - ymin) * (H - 2.0 * PAD);
    y_range(&mut o, ymin, ymax);
    if ymin < 0.0 {
        let _ = write!(o, "<line x1=\"{PAD}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ccc\" stroke-dasharray=\"4\"/>", sy(0.0), W - PAD / 2.0);
    }
    let _ = write!(o, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>", W / 2.0, H - 8.0, esc(x_label));
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(o, "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>", s.color, path.join(" "));
        for &(x, y) in &s.points {
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\" data-series=\"{}\" data-value=\"{}\"><title>{}: {}</title></circle>",
                sx(x),
                sy(y),
                s.color,
                esc(s.name),
                fmt(y),
                esc(s.name),
                fmt(y)
            );
        }
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{}\">{}</text>",
            PAD + 8.0 + 190.0 * (i % 3) as f64,
            PAD - 29.0 + 13.0 * (i / 3) as f64,
            s.color,
            esc(s.name)
        );
    }
    o + "</svg>"
}

/// Vertical bars, one per (label, value).
pub fn bars(id: &str, title: &str, unit: &str, bars: &[(String, f64)], absent: &str) -> String {
    let mut o = open(id, title);
    if bars.is_empty() {
        empty(&mut o, absent);
        return o + "</svg>";
    }
    let max = bars.iter().fold(0.0f64, |m, b| m.max(b.1.abs())).max(1.0);
    y_axis(&mut o, max);
    let _ = write!(o, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>", W - PAD / 2.0, PAD - 16.0, esc(unit));
    let slot = (W - 1.5 * PAD) / bars.len() as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = v.max(0.0) / max * (H - 2.0 * PAD);
        let x = PAD + i as f64 * slot + slot * 0.1;
        let _ = write!(
            o,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4a7bd0\" data-label=\"{}\" data-value=\"{}\"><title>{}: {}</title></rect>",
            H - PAD - h,
            slot * 0.8,
            esc(label),
            fmt(*v),
            esc(label),
            fmt(*v)
        );
        let short: String = label.chars().rev().take(14).collect::<Vec<_>>().into_iter().rev().collect();
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\" transform=\"rotate(-30 {:.1} {})\">{}</text>",
            x + slot * 0.4,
            H - PAD + 12.0,
            x + slot * 0.4,
            H - PAD + 12.0,
            esc(&short)
        );
    }
    o + "</svg>"
}
