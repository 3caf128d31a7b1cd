//! The WAN chart, as hand-written SVG: times in round trips of the path on the left (channel
//! open, fresh process, call p99 idle and beside bulk), bulk MB/s on the right, a bar per
//! column (QUIC without and with loss, WSS, TCP).

use std::fmt::Write as _;

use super::report::{Column, WanSummary};
use crate::svg::{escape, grid_line};

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 440.0;
const PLOT_TOP: f64 = 60.0;
const PLOT_HEIGHT: f64 = 280.0;
const LEFT_X: f64 = 60.0;
const LEFT_WIDTH: f64 = 540.0;
const RIGHT_X: f64 = 680.0;
const RIGHT_WIDTH: f64 = 260.0;
/// The columns' colours, in [`WanFigures::columns`](super::report::WanFigures::columns)' order.
const COLOURS: [&str; 4] = ["#1f77b4", "#9ecae1", "#ff7f0e", "#bdbdbd"];

/// A time of a column in path RTTs: its label and how to read it (ms).
type Figure = (&'static str, fn(&Column) -> Option<f64>);

const TIMES: [Figure; 5] = [
    ("channel open p50", |c| c.open.map(|o| o.p50_ms)),
    ("fresh process, 1st answer", |c| Some(c.fresh_ms)),
    ("connecting again, 1st answer", |c| Some(c.again_ms)),
    ("call p99, idle", |c| Some(c.idle.p99_ms)),
    ("call p99, beside bulk", |c| Some(c.busy.p99_ms)),
];

/// Renders `summary` (rounded) as an SVG document.
pub fn render(summary: &WanSummary) -> String {
    let f = &summary.wan;
    let columns = f.columns();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);

    // Left: times in path RTTs.
    let rtt = f.path_rtt_ms;
    let times: Vec<Vec<Option<f64>>> = TIMES
        .iter()
        .map(|(_, get)| columns.iter().map(|(_, c)| get(c).map(|ms| if rtt > 0.0 { ms / rtt } else { 0.0 })).collect())
        .collect();
    let highest = times.iter().flatten().flatten().copied().fold(1.0, f64::max);
    let top = highest.ceil();
    let title = format!("Time in path round trips (RTT = {} ms: 2 legs x 2 x {} ms)", f.path_rtt_ms, f.delay_ms);
    text(&mut svg, LEFT_X, 30.0, &title, r#"font-size="13" font-weight="bold""#);
    let step = if top > 8.0 { 2.0 } else { 1.0 };
    panel(&mut svg, LEFT_X, LEFT_WIDTH, top, step);
    bars(&mut svg, LEFT_X, LEFT_WIDTH, top, &TIMES.map(|(label, _)| label), &times, 2);

    // Right: bulk MB/s.
    let rates: Vec<Vec<Option<f64>>> = vec![columns.iter().map(|(_, c)| Some(c.bulk_mbps)).collect()];
    let highest = rates.iter().flatten().flatten().copied().fold(1.0, f64::max);
    let magnitude = 10f64.powf(highest.log10().floor());
    let top = (highest / magnitude).ceil() * magnitude;
    text(&mut svg, RIGHT_X, 30.0, "Bulk, 1 MiB echoes (MB/s)", r#"font-size="13" font-weight="bold""#);
    panel(&mut svg, RIGHT_X, RIGHT_WIDTH, top, top / 5.0);
    bars(&mut svg, RIGHT_X, RIGHT_WIDTH, top, &["MB/s, payload one way"], &rates, 1);

    // Legend and notes.
    let y = PLOT_TOP + PLOT_HEIGHT + 44.0;
    for (i, ((name, _), colour)) in columns.iter().zip(COLOURS).enumerate() {
        let x = LEFT_X + 130.0 * i as f64;
        let _ = writeln!(svg, r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#, y - 10.0);
        text(&mut svg, x + 16.0, y, name, "");
    }
    let runs = if summary.runs > 1 { format!(" Medians of {} runs.", summary.runs) } else { String::new() };
    let notes = [
        "Loopback, userspace impairment proxies on both legs (caller-relay, relay-host). wss and tcp: no loss \
         (TCP's cannot be made in userspace);"
            .to_owned(),
        format!(
            "tcp: tarpc straight to the host, one proxy with the delay of both legs. Bulk beside 64-byte calls on \
             another channel.{runs}"
        ),
    ];
    for (i, note) in notes.iter().enumerate() {
        text(&mut svg, LEFT_X, HEIGHT - 26.0 + 14.0 * i as f64, note, r##"font-size="11" fill="#555555""##);
    }
    svg.push_str("</svg>\n");
    svg
}

/// A panel's grid from 0 to `top` every `step`, and its axes.
fn panel(svg: &mut String, x: f64, width: f64, top: f64, step: f64) {
    let mut v = 0.0;
    while v <= top + 1e-9 && step > 0.0 {
        grid_line(svg, x, width, PLOT_TOP + PLOT_HEIGHT * (1.0 - v / top), &short(v));
        v += step;
    }
    let bottom = PLOT_TOP + PLOT_HEIGHT;
    let _ = writeln!(svg, r##"<path d="M{x} {PLOT_TOP} V{bottom} H{:.1}" fill="none" stroke="#333333"/>"##, x + width);
}

/// Groups of bars: one group per label, one bar per column (`values[group][column]`), scaled
/// to `top`; each labelled with its value to `digits` digits. A missing value is a gap.
fn bars(svg: &mut String, x: f64, width: f64, top: f64, labels: &[&str], values: &[Vec<Option<f64>>], digits: usize) {
    let group = width / labels.len().max(1) as f64;
    for (i, (label, group_values)) in labels.iter().zip(values).enumerate() {
        let x0 = x + group * i as f64 + group * 0.1;
        let bar = group * 0.8 / group_values.len().max(1) as f64;
        for (j, (value, colour)) in group_values.iter().zip(COLOURS).enumerate() {
            let Some(value) = value else { continue };
            let height = PLOT_HEIGHT * (value / top).clamp(0.0, 1.0);
            let (bx, by) = (x0 + bar * j as f64, PLOT_TOP + PLOT_HEIGHT - height);
            let _ = writeln!(
                svg,
                r#"<rect x="{bx:.1}" y="{by:.1}" width="{:.1}" height="{height:.1}" fill="{colour}"/>"#,
                (bar - 2.0).max(0.0)
            );
            let attrs = r#"text-anchor="middle" font-size="9""#;
            text(svg, bx + (bar - 2.0) / 2.0, by - 3.0, &format!("{value:.digits$}"), attrs);
        }
        text(svg, x0 + group * 0.4, PLOT_TOP + PLOT_HEIGHT + 18.0, label, r#"text-anchor="middle""#);
    }
}

fn text(svg: &mut String, x: f64, y: f64, content: &str, attrs: &str) {
    let _ = writeln!(svg, r#"<text x="{x:.1}" y="{y:.1}" {attrs}>{}</text>"#, escape(content));
}

/// A grid label: whole numbers bare, others with one digit.
fn short(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{v:.0}") } else { format!("{v:.1}") }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::report::{Timed, WanFigures};
    use super::*;

    #[test]
    fn renders_every_column_and_escapes_text() {
        let column = |open| Column {
            open,
            fresh_ms: 100.0,
            idle: Timed { p50_ms: 40.0, p99_ms: 45.0 },
            busy: Timed { p50_ms: 41.0, p99_ms: 50.0 },
            bulk_mbps: 30.0,
            ..Column::default()
        };
        let open = Some(Timed { p50_ms: 42.0, p99_ms: 60.0 });
        let figures =
            WanFigures::new(Duration::from_millis(10), 0.01, column(open), column(open), column(open), column(None));
        let summary = WanSummary::new(vec![figures], vec![None]).unwrap();
        let svg = render(&summary.rounded());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        for name in ["quic 0%", "quic 1%", "wss", "tcp"] {
            assert!(svg.contains(&format!(">{name}<")), "{name} missing");
        }
        assert!(svg.contains(">1.05<"), "the open's 42 ms in 40 ms RTTs");
        assert_eq!(short(2.0), "2");
        assert_eq!(short(2.5), "2.5");
    }
}
