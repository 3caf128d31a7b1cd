//! The chart, as hand-written SVG: latency percentiles per subject (log scale) on the left,
//! throughput relative to the `tls` baseline on the right (the medians of the runs' ratios).

use std::fmt::Write as _;

use crate::report::{Figures, Summary, TransportFigures};

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 460.0;
/// Each panel's plot area: left, top, width, height.
const PLOT_TOP: f64 = 60.0;
const PLOT_HEIGHT: f64 = 300.0;
const PLOT_WIDTH: f64 = 380.0;
const LEFT_X: f64 = 70.0;
const RIGHT_X: f64 = 570.0;

/// The subjects: their key, their name on the chart, their colour.
const TRANSPORTS: [(&str, &str, &str); 4] = [
    ("tcp", "tcp", "#bdbdbd"),
    ("tls", "tls", "#636363"),
    ("quic", "relay quic", "#1f77b4"),
    ("wss", "relay wss", "#ff7f0e"),
];
/// The baseline throughput is shown relative to.
const REFERENCE: &str = "tls";
const PERCENTILES: [(&str, &str); 4] =
    [("p50", "#c6dbef"), ("p90", "#6baed6"), ("p99", "#2171b5"), ("p99.9", "#08306b")];

/// Renders `summary` (rounded) as an SVG document.
pub fn render(summary: &Summary) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    latency_panel(&mut svg, &summary.median);
    throughput_panel(&mut svg, summary);
    let runs = if summary.runs > 1 { format!(" Medians of {} runs.", summary.runs) } else { String::new() };
    let notes = [
        "Loopback; relay, host and caller in separate processes. Baselines: tarpc straight to the host over one \
         TCP connection, same contract and codec;"
            .to_owned(),
        format!(
            "tcp: in the clear; tls: inside TLS 1.3, as each of the relay's two hops is. \
             MB = 10^6 bytes of payload, counted one way.{runs}"
        ),
    ];
    for (i, note) in notes.iter().enumerate() {
        let y = HEIGHT - 26.0 + 14.0 * i as f64;
        let _ =
            writeln!(svg, r##"<text x="{LEFT_X}" y="{y:.0}" font-size="11" fill="#555555">{}</text>"##, escape(note));
    }
    svg.push_str("</svg>\n");
    svg
}

fn transports(figures: &Figures) -> [&TransportFigures; 4] {
    [&figures.tcp, &figures.tls, &figures.quic, &figures.wss]
}

fn latency_panel(svg: &mut String, figures: &Figures) {
    title(svg, LEFT_X, "Latency, sequential 64-byte echo calls (µs, log scale)");
    let values: Vec<[f64; 4]> = transports(figures).iter().map(|t| [t.p50_us, t.p90_us, t.p99_us, t.p999_us]).collect();
    let positive = values.iter().flatten().copied().filter(|v| *v > 0.0);
    let low = positive.clone().fold(f64::INFINITY, f64::min);
    let high = positive.fold(0.0, f64::max);
    let (lo_exp, hi_exp) = if low.is_finite() && high > 0.0 {
        (low.log10().floor(), high.log10().ceil().max(low.log10().floor() + 1.0))
    } else {
        (0.0, 1.0)
    };
    let y = |v: f64| {
        let v = v.max(10f64.powf(lo_exp));
        PLOT_TOP + PLOT_HEIGHT * (1.0 - (v.log10() - lo_exp) / (hi_exp - lo_exp))
    };
    let mut exp = lo_exp;
    while exp <= hi_exp {
        let value = 10f64.powf(exp);
        let label = if value >= 1000.0 { format!("{:.0}k", value / 1000.0) } else { format!("{value}") };
        grid_line(svg, LEFT_X, PLOT_WIDTH, y(value), &label);
        exp += 1.0;
    }
    let group = PLOT_WIDTH / TRANSPORTS.len() as f64;
    let bar = group * 0.8 / PERCENTILES.len() as f64;
    for (i, (_, name, _)) in TRANSPORTS.iter().enumerate() {
        let x0 = LEFT_X + group * i as f64 + group * 0.1;
        for (j, (_, colour)) in PERCENTILES.iter().enumerate() {
            let v = values[i][j];
            let top = y(v);
            let x = x0 + bar * j as f64;
            rect(svg, x, top, bar - 2.0, PLOT_TOP + PLOT_HEIGHT - top, colour);
            value_label(svg, x + (bar - 2.0) / 2.0, top - 3.0, &short(v));
        }
        axis_label(svg, x0 + group * 0.4, name);
    }
    axes(svg, LEFT_X);
    let legend: Vec<(&str, &str)> = PERCENTILES.to_vec();
    draw_legend(svg, LEFT_X, &legend);
}

fn throughput_panel(svg: &mut String, summary: &Summary) {
    title(svg, RIGHT_X, "Throughput, % of the tls baseline (labels: values)");
    let metrics: [Metric; 3] = [
        ("calls/s, 64 in flight", "calls_per_s", |t| t.calls_per_s),
        ("MB/s, 64 KiB echo", "mbps_64k", |t| t.mbps_64k),
        ("MB/s, 1 MiB echo", "mbps_1m", |t| t.mbps_1m),
    ];
    let all = transports(&summary.median);
    let percent = |key: &str, subject: &str| {
        if subject == REFERENCE {
            100.0
        } else {
            summary.ratio(subject, REFERENCE, key).map_or(0.0, |r| 100.0 * r.median)
        }
    };
    let highest = metrics
        .iter()
        .flat_map(|(_, key, _)| TRANSPORTS.iter().map(|(subject, _, _)| percent(key, subject)))
        .fold(100.0, f64::max);
    let top_percent = (highest / 25.0).ceil() * 25.0;
    let y = |p: f64| PLOT_TOP + PLOT_HEIGHT * (1.0 - p.clamp(0.0, top_percent) / top_percent);
    let mut p = 0.0;
    while p <= top_percent {
        grid_line(svg, RIGHT_X, PLOT_WIDTH, y(p), &format!("{p:.0}%"));
        p += 25.0;
    }
    let group = PLOT_WIDTH / metrics.len() as f64;
    let bar = group * 0.8 / TRANSPORTS.len() as f64;
    for (i, (label, key, get)) in metrics.iter().enumerate() {
        let x0 = RIGHT_X + group * i as f64 + group * 0.1;
        for (j, (t, (subject, _, colour))) in all.iter().zip(TRANSPORTS).enumerate() {
            let top = y(percent(key, subject));
            let x = x0 + bar * j as f64;
            rect(svg, x, top, bar - 2.0, PLOT_TOP + PLOT_HEIGHT - top, colour);
            value_label(svg, x + (bar - 2.0) / 2.0, top - 3.0, &short(get(t)));
        }
        axis_label(svg, x0 + group * 0.4, label);
    }
    axes(svg, RIGHT_X);
    let legend: Vec<(&str, &str)> = TRANSPORTS.iter().map(|(_, name, colour)| (*name, *colour)).collect();
    draw_legend(svg, RIGHT_X, &legend);
}

/// A throughput figure: its label, its key among the ratios, and how to read it.
type Metric = (&'static str, &'static str, fn(&TransportFigures) -> f64);

fn title(svg: &mut String, x: f64, text: &str) {
    let _ = writeln!(svg, r#"<text x="{x}" y="30" font-size="13" font-weight="bold">{}</text>"#, escape(text));
}

/// A horizontal grid line at `y` across a plot of `width` starting at `x`, labelled on its left
/// (the WAN chart draws its own panels' grid with it too).
pub(crate) fn grid_line(svg: &mut String, x: f64, width: f64, y: f64, label: &str) {
    let _ = writeln!(
        svg,
        r##"<line x1="{x}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555555">{}</text>"##,
        x + width,
        x - 6.0,
        y + 4.0,
        escape(label)
    );
}

fn axes(svg: &mut String, x: f64) {
    let bottom = PLOT_TOP + PLOT_HEIGHT;
    let _ =
        writeln!(svg, r##"<path d="M{x} {PLOT_TOP} V{bottom} H{:.1}" fill="none" stroke="#333333"/>"##, x + PLOT_WIDTH);
}

fn rect(svg: &mut String, x: f64, y: f64, width: f64, height: f64, fill: &str) {
    let _ = writeln!(
        svg,
        r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
        width.max(0.0),
        height.max(0.0)
    );
}

fn value_label(svg: &mut String, x: f64, y: f64, text: &str) {
    let _ = writeln!(svg, r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" font-size="9">{}</text>"#, escape(text));
}

fn axis_label(svg: &mut String, x: f64, text: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        PLOT_TOP + PLOT_HEIGHT + 18.0,
        escape(text)
    );
}

fn draw_legend(svg: &mut String, x: f64, entries: &[(&str, &str)]) {
    let y = PLOT_TOP + PLOT_HEIGHT + 44.0;
    let step = PLOT_WIDTH / entries.len() as f64;
    for (i, (name, colour)) in entries.iter().enumerate() {
        let at = x + step * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{at:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 10.0,
            at + 16.0,
            escape(name)
        );
    }
}

/// A short form of `v`: `812`, `41.2k`, `1.3M`, `3.5`.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// `text` safe inside an SVG element.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short(812.4), "812");
        assert_eq!(short(41_234.0), "41.2k");
        assert_eq!(short(1_300_000.0), "1.3M");
        assert_eq!(short(3.46), "3.5");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("Vec<u8> & co"), "Vec&lt;u8&gt; &amp; co");
    }
}
