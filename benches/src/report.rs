//! What a run prints and writes: the live progress line, the final summary,
//! `--json FILE` with the same figures, and `--plot FILE.svg` with throughput
//! and latency percentiles over time.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use crate::stats::{Percentiles, Stats};

/// The figures of one finished run (or one side of it: produce, consume, end-to-end).
#[derive(Debug, Clone)]
pub struct Summary {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Option<Percentiles>,
}

impl Summary {
    pub fn of(name: &str, stats: &Stats, elapsed: Duration) -> Summary {
        Summary {
            name: name.to_string(),
            messages: stats.messages,
            bytes: stats.bytes,
            errors: stats.errors,
            elapsed,
            latency: Percentiles::of(&stats.latency),
        }
    }

    pub fn messages_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn print(&self) {
        println!(
            "{}: {} messages, {:.1} MB in {:.2} s: {:.0} msg/s, {:.1} MB/s{}",
            self.name,
            self.messages,
            self.bytes as f64 / 1e6,
            self.elapsed.as_secs_f64(),
            self.messages_per_s(),
            self.mb_per_s(),
            if self.errors > 0 {
                format!(", {} errors", self.errors)
            } else {
                String::new()
            }
        );
        if let Some(p) = self.latency {
            println!(
                "{} latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                self.name, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
    }

    fn json(&self) -> String {
        let mut out = format!(
            "{{\"name\":\"{}\",\"messages\":{},\"bytes\":{},\"errors\":{},\"seconds\":{:.6},\"messages_per_s\":{:.1},\"mb_per_s\":{:.3}",
            self.name,
            self.messages,
            self.bytes,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.messages_per_s(),
            self.mb_per_s()
        );
        if let Some(p) = self.latency {
            let _ = write!(
                out,
                ",\"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}}",
                p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        out.push('}');
        out
    }
}

/// Writes the summaries and the run's settings as one JSON object.
pub fn write_json(
    path: &Path,
    settings: &[(&str, String)],
    summaries: &[Summary],
) -> std::io::Result<()> {
    let mut out = String::from("{\"settings\":{");
    for (i, (key, value)) in settings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "\"{key}\":\"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    out.push_str("},\"results\":[");
    for (i, s) in summaries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&s.json());
    }
    out.push_str("]}\n");
    std::fs::write(path, out)
}

/// The live progress line: rewritten in place on a terminal, one line per
/// interval otherwise (CI logs, files).
pub struct Progress {
    terminal: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress {
    pub fn update(
        &self,
        name: &str,
        elapsed: Duration,
        rate: f64,
        mb_per_s: f64,
        p99_ms: Option<f64>,
        remaining: Option<Duration>,
    ) {
        let mut line = format!(
            "[{name}] {:>6.1}s  {:>10.0} msg/s  {:>8.1} MB/s",
            elapsed.as_secs_f64(),
            rate,
            mb_per_s
        );
        if let Some(p99) = p99_ms {
            let _ = write!(line, "  p99 {p99:.2} ms");
        }
        if let Some(left) = remaining {
            let _ = write!(line, "  {:.0}s left", left.as_secs_f64());
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}

/// Draws messages/s and latency percentiles per second as an SVG: two
/// panels sharing the time axis, one series per run side.
pub fn write_plot(path: &Path, title: &str, series: &[(&str, &Stats)]) -> std::io::Result<()> {
    const WIDTH: f64 = 960.0;
    const PANEL: f64 = 260.0;
    const MARGIN: f64 = 70.0;
    let seconds = series
        .iter()
        .map(|(_, s)| s.timeline.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let x = |i: usize| MARGIN + (WIDTH - 2.0 * MARGIN) * (i as f64 + 0.5) / seconds as f64;
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{MARGIN}\" y=\"24\" font-size=\"15\">{}</text>\n",
        2.0 * PANEL + 3.0 * MARGIN,
        escape(title)
    );
    // Panel 1: messages per second.
    let top1 = MARGIN;
    let rate_max = series
        .iter()
        .flat_map(|(_, s)| s.timeline.iter().map(|b| b.messages))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    axis(
        &mut svg, top1, PANEL, WIDTH, MARGIN, seconds, rate_max, "msg/s",
    );
    for (n, (name, stats)) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = stats
            .timeline
            .iter()
            .enumerate()
            .map(|(i, b)| (x(i), top1 + PANEL - PANEL * b.messages as f64 / rate_max))
            .collect();
        polyline(&mut svg, &points, colors[n % colors.len()], "");
        legend(
            &mut svg,
            WIDTH - MARGIN - 200.0,
            top1 + 16.0 * (n as f64 + 1.0),
            colors[n % colors.len()],
            &format!("{name} msg/s"),
            "",
        );
    }
    // Panel 2: latency percentiles (log-free, linear ms).
    let top2 = 2.0 * MARGIN + PANEL;
    let quantiles = [
        (0.5, "p50", ""),
        (0.99, "p99", "6,3"),
        (0.999, "p99.9", "2,3"),
    ];
    let lat_max = series
        .iter()
        .flat_map(|(_, s)| s.timeline.iter())
        .filter(|b| !b.latency.is_empty())
        .map(|b| b.latency.value_at_quantile(0.999) as f64 / 1000.0)
        .fold(0.0f64, f64::max)
        .max(0.001);
    axis(
        &mut svg,
        top2,
        PANEL,
        WIDTH,
        MARGIN,
        seconds,
        lat_max,
        "latency ms",
    );
    let mut legend_row = 0;
    for (n, (name, stats)) in series.iter().enumerate() {
        if stats.latency.is_empty() {
            continue;
        }
        for (q, label, dash) in quantiles {
            let points: Vec<(f64, f64)> = stats
                .timeline
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.latency.is_empty())
                .map(|(i, b)| {
                    let ms = b.latency.value_at_quantile(q) as f64 / 1000.0;
                    (x(i), top2 + PANEL - PANEL * (ms / lat_max).min(1.0))
                })
                .collect();
            polyline(&mut svg, &points, colors[n % colors.len()], dash);
            legend_row += 1;
            legend(
                &mut svg,
                WIDTH - MARGIN - 200.0,
                top2 + 16.0 * legend_row as f64,
                colors[n % colors.len()],
                &format!("{name} {label}"),
                dash,
            );
        }
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[allow(clippy::too_many_arguments)]
fn axis(
    svg: &mut String,
    top: f64,
    height: f64,
    width: f64,
    margin: f64,
    seconds: usize,
    max: f64,
    label: &str,
) {
    let bottom = top + height;
    let _ = writeln!(
        svg,
        "<line x1=\"{margin}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"black\"/>\n<line x1=\"{margin}\" y1=\"{top}\" x2=\"{margin}\" y2=\"{bottom}\" stroke=\"black\"/>",
        width - margin
    );
    for step in 0..=4 {
        let value = max * step as f64 / 4.0;
        let y = bottom - height * step as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{margin}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>",
            margin - 6.0,
            y + 4.0,
            short(value),
            width - margin
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds (0-{seconds})</text><text x=\"{}\" y=\"{}\" font-weight=\"bold\">{label}</text>",
        width / 2.0,
        bottom + 28.0,
        margin,
        top - 8.0
    );
}

fn short(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn polyline(svg: &mut String, points: &[(f64, f64)], color: &str, dash: &str) {
    if points.is_empty() {
        return;
    }
    let coords: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\" points=\"{}\"/>",
        coords.join(" ")
    );
}

fn legend(svg: &mut String, x: f64, y: f64, color: &str, label: &str, dash: &str) {
    let _ = writeln!(
        svg,
        "<line x1=\"{x}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/><text x=\"{}\" y=\"{y}\">{}</text>",
        y - 4.0,
        x + 24.0,
        y - 4.0,
        x + 30.0,
        escape(label)
    );
}
