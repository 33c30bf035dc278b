//! What a run produces: one row per backend and format, the spec's table, the full figures, the
//! JSON record and an SVG chart.

use std::fmt::Write as _;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// A progress bar with a template (a bad template falls back to the default style).
pub fn bar(len: u64, template: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// Median, minimum and maximum of the measured runs, with the samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stats {
    /// `None` for no samples; non-finite samples (a zero duration) are left out.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples: samples.to_vec(),
        })
    }
}

/// Whether a row was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    Measured,
    /// The backend is not there; the reason says how to get it.
    Unavailable(String),
    /// It is there but the run failed.
    Failed(String),
}

/// One backend with one weight format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The spec's "Framework" column.
    pub framework: String,
    /// The `--backends` name that produced it.
    pub backend: String,
    /// The weights it ran: `q4_0`, `q8_0`, `f16` (GGUF) or `safetensors` (MLX; the notes say the dtype it ran in).
    pub format: Option<String>,
    #[serde(flatten)]
    pub status: Status,
    pub load_seconds: Option<f64>,
    pub ttft_ms: Option<Stats>,
    pub prompt_tokens_per_second: Option<Stats>,
    pub decode_tokens_per_second: Option<Stats>,
    /// Wall seconds of one whole request as the caller saw it; for the per-call-subprocess row
    /// that includes starting Python and loading the model.
    pub seconds_per_call: Option<Stats>,
    /// The per-call-subprocess row: generated tokens per second of a whole call's wall time.
    pub effective_tokens_per_second: Option<Stats>,
    pub peak_rss_bytes: Option<u64>,
    /// Whose clocks: `backend` or `client`.
    pub timing_source: Option<String>,
    pub bytes_read_per_token: Option<u64>,
    pub ceiling_tokens_per_second: Option<f64>,
    /// A constrained row: the grammar's time per sampled token, p50 and p99 (each the median
    /// over the runs).
    pub grammar_p50_ms: Option<Stats>,
    pub grammar_p99_ms: Option<Stats>,
    /// False when the backend could not be held to the same prompt and token count.
    pub comparable: bool,
    pub notes: Vec<String>,
    /// `--step-times`: where the CPU engine's forwards spent their time, one line per phase.
    pub step_times: Option<String>,
}

impl Row {
    pub fn new(
        framework: impl Into<String>,
        backend: impl Into<String>,
        format: Option<String>,
    ) -> Self {
        Self {
            framework: framework.into(),
            backend: backend.into(),
            format,
            status: Status::Measured,
            load_seconds: None,
            ttft_ms: None,
            prompt_tokens_per_second: None,
            decode_tokens_per_second: None,
            seconds_per_call: None,
            effective_tokens_per_second: None,
            peak_rss_bytes: None,
            timing_source: None,
            bytes_read_per_token: None,
            ceiling_tokens_per_second: None,
            grammar_p50_ms: None,
            grammar_p99_ms: None,
            comparable: true,
            notes: Vec::new(),
            step_times: None,
        }
    }

    pub fn unavailable(mut self, reason: impl Into<String>) -> Self {
        self.status = Status::Unavailable(reason.into());
        self.comparable = false;
        self
    }

    pub fn failed(mut self, error: impl Into<String>) -> Self {
        self.status = Status::Failed(error.into());
        self.comparable = false;
        self
    }

    /// The figure the spec's table shows: decode tokens/s, or for the per-call row the tokens
    /// one whole call delivers per second of its wall time.
    pub fn headline_tokens_per_second(&self) -> Option<f64> {
        self.headline().map(|s| s.median)
    }

    pub fn headline(&self) -> Option<&Stats> {
        self.effective_tokens_per_second
            .as_ref()
            .or(self.decode_tokens_per_second.as_ref())
    }
}

/// The spec's performance table: `Framework | Model | Tokens/Sec | Notes`.
pub fn spec_table(rows: &[Row], model: &str) -> String {
    let mut out = String::from("| Framework | Model | Tokens/Sec | Notes |\n|---|---|---|---|\n");
    for row in rows {
        let model_cell = match &row.format {
            Some(f) => format!("{model} {f}"),
            None => model.to_owned(),
        };
        let (rate, mut notes) = match &row.status {
            Status::Measured => (
                row.headline_tokens_per_second()
                    .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1}")),
                row.notes.clone(),
            ),
            Status::Unavailable(reason) => ("—".to_owned(), vec![format!("unavailable: {reason}")]),
            Status::Failed(error) => ("—".to_owned(), vec![format!("failed: {error}")]),
        };
        if row.status == Status::Measured {
            if let Some(c) = row.ceiling_tokens_per_second {
                notes.insert(0, format!("ceiling {c:.1} t/s"));
            }
            if !row.comparable {
                notes.insert(0, "NOT COMPARABLE".to_owned());
            }
        }
        let notes = notes.join("; ").replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} | {model_cell} | {rate} | {notes} |",
            row.framework
        );
    }
    out
}

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

fn spread(s: &Option<Stats>, fmt: fn(f64) -> String) -> String {
    s.as_ref().map_or_else(
        || "—".to_owned(),
        |s| format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max)),
    )
}

/// Every figure of every measured row, median (min–max).
pub fn full_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Framework | Format | Load s | TTFT ms | Prompt t/s | Decode t/s | s/call | Peak RSS | Ceiling t/s | Clocks |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows.iter().filter(|r| r.status == Status::Measured) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.framework,
            row.format.as_deref().unwrap_or("—"),
            row.load_seconds
                .map_or_else(|| "—".to_owned(), |s| format!("{s:.2}")),
            spread(&row.ttft_ms, ms),
            spread(&row.prompt_tokens_per_second, ms),
            spread(&row.decode_tokens_per_second, ms),
            spread(&row.seconds_per_call, |v| format!("{v:.2}")),
            row.peak_rss_bytes.map_or_else(
                || "—".to_owned(),
                |b| format!("{:.2} GiB", super::machine::gib(b))
            ),
            row.ceiling_tokens_per_second
                .map_or_else(|| "—".to_owned(), |c| format!("{c:.1}")),
            row.timing_source.as_deref().unwrap_or("—"),
        );
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart of decode tokens/s (median, with a min–max whisker) and each row's
/// bandwidth ceiling as a dashed mark. Hand-written SVG: labels are `<text>` the viewer renders,
/// so nothing here needs a font.
pub fn svg_chart(rows: &[Row], title: &str, subtitle: &str) -> String {
    const PLOT_W: f64 = 520.0;
    // No font metrics without a font library: size text by a generous average glyph width for
    // 13px sans-serif, so no label, title or legend is cut off.
    const GLYPH_W: f64 = 7.4;
    const LEGEND: &str = "tokens/s (decode; per-call row: per whole call): bar = median, line = min–max, red dashes = bandwidth ceiling";
    let label_of = |row: &Row| match &row.format {
        Some(f) => format!("{} · {f}", row.framework),
        None => row.framework.clone(),
    };
    let longest = rows
        .iter()
        .map(|r| label_of(r).chars().count())
        .max()
        .unwrap_or(0);
    let label_w = (longest as f64 * GLYPH_W + 30.0).max(200.0);
    const BAR_H: f64 = 22.0;
    const GAP: f64 = 12.0;
    const TOP: f64 = 70.0;
    let width = (label_w + PLOT_W + 120.0)
        .max(label_w + LEGEND.chars().count() as f64 * GLYPH_W + 20.0)
        .max(subtitle.chars().count() as f64 * GLYPH_W + 40.0)
        .max(
            rows.iter()
                .filter_map(|r| match &r.status {
                    Status::Unavailable(t) | Status::Failed(t) => Some(t.chars().count()),
                    Status::Measured => None,
                })
                .map(|n| label_w + n as f64 * GLYPH_W + 20.0)
                .fold(0.0, f64::max),
        );
    let height = TOP + rows.len() as f64 * (BAR_H + GAP) + 50.0;
    let max = rows
        .iter()
        .filter(|r| r.status == Status::Measured)
        .flat_map(|r| [r.headline().map(|s| s.max), r.ceiling_tokens_per_second])
        .flatten()
        .fold(0.0f64, f64::max)
        .max(1.0);
    let x = |v: f64| label_w + v / max * PLOT_W;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="16" y="26" font-size="17" font-weight="bold">{}</text>"##,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="16" y="48" fill="#555555">{}</text>"##,
        escape(subtitle)
    );
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + i as f64 * (BAR_H + GAP);
        let label = label_of(row);
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            label_w - 10.0,
            y + BAR_H * 0.7,
            escape(&label)
        );
        match (&row.status, row.headline()) {
            (Status::Measured, Some(s)) => {
                let colour = if row.comparable { "#3b7dd8" } else { "#b0b0b0" };
                let _ = writeln!(
                    svg,
                    r##"<rect x="{label_w}" y="{y:.1}" width="{:.1}" height="{BAR_H}" fill="{colour}"><title>{:.1} t/s (min {:.1}, max {:.1})</title></rect>"##,
                    x(s.median) - label_w,
                    s.median,
                    s.min,
                    s.max
                );
                let mid = y + BAR_H / 2.0;
                let _ = writeln!(
                    svg,
                    r##"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="#1a1a1a" stroke-width="1.5"/>"##,
                    x(s.min),
                    x(s.max)
                );
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}">{:.1}{}</text>"##,
                    x(s.max.max(s.median)) + 6.0,
                    y + BAR_H * 0.7,
                    s.median,
                    if row.comparable {
                        ""
                    } else {
                        " (not comparable)"
                    }
                );
                if let Some(c) = row.ceiling_tokens_per_second {
                    let _ = writeln!(
                        svg,
                        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#d9534f" stroke-width="2" stroke-dasharray="4 3"><title>ceiling {c:.1} t/s</title></line>"##,
                        x(c),
                        y - 3.0,
                        x(c),
                        y + BAR_H + 3.0
                    );
                }
            }
            (Status::Measured, None) => {
                let _ = writeln!(
                    svg,
                    r##"<text x="{label_w}" y="{:.1}" fill="#777777">no decode figure</text>"##,
                    y + BAR_H * 0.7
                );
            }
            (Status::Unavailable(reason) | Status::Failed(reason), _) => {
                let short: String = reason.chars().take(70).collect();
                let _ = writeln!(
                    svg,
                    r##"<text x="{label_w}" y="{:.1}" fill="#a94442">{}</text>"##,
                    y + BAR_H * 0.7,
                    escape(&short)
                );
            }
        }
    }
    let legend_y = height - 20.0;
    let _ = writeln!(
        svg,
        r##"<text x="{label_w}" y="{legend_y:.1}" fill="#555555">{LEGEND}</text>"##
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;

    fn measured() -> Row {
        let mut row = Row::new("Candle (in-process)", "candle", Some("q4_0".into()));
        row.decode_tokens_per_second = Stats::of(&[10.0, 12.0, 11.0]);
        row.ceiling_tokens_per_second = Some(40.0);
        row.notes.push("prompt 128 tokens".into());
        row
    }

    #[test]
    fn stats_take_the_median_and_the_spread() {
        let s = Stats::of(&[3.0, 1.0, 2.0, f64::INFINITY]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn spec_table_has_the_spec_columns_and_unavailable_rows_with_their_reason() {
        let rows = vec![
            measured(),
            Row::new("MLX (adapter)", "mlx", None)
                .unavailable("MLX_NOT_AVAILABLE — run cargo xtask setup-mlx"),
        ];
        let table = spec_table(&rows, "tiny");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| Framework | Model | Tokens/Sec | Notes |");
        assert_eq!(
            lines[2],
            "| Candle (in-process) | tiny q4_0 | 11.0 | ceiling 40.0 t/s; prompt 128 tokens |"
        );
        assert_eq!(
            lines[3],
            "| MLX (adapter) | tiny | — | unavailable: MLX_NOT_AVAILABLE — run cargo xtask setup-mlx |"
        );
    }

    #[test]
    fn a_row_that_could_not_be_held_to_the_same_work_says_so() {
        let mut row = measured();
        row.comparable = false;
        assert!(spec_table(&[row.clone()], "m").contains("| NOT COMPARABLE; ceiling"));
        assert!(svg_chart(&[row], "t", "s").contains("(not comparable)"));
    }

    #[test]
    fn the_json_record_of_a_row_has_flat_status_and_figures() {
        let value = serde_json::to_value(measured()).unwrap();
        assert_eq!(value["status"], "measured");
        assert_eq!(value["decode_tokens_per_second"]["median"], 11.0);
        assert_eq!(value["format"], "q4_0");
        let value =
            serde_json::to_value(Row::new("Ollama", "ollama", None).unavailable("not reachable"))
                .unwrap();
        assert_eq!(value["status"], "unavailable");
        assert_eq!(value["reason"], "not reachable");
    }

    #[test]
    fn the_chart_is_well_formed_svg_with_escaped_labels() {
        let mut row = measured();
        row.framework = "A <b> & C".into();
        let svg = svg_chart(&[row, Row::new("x", "x", None).failed("boom")], "t", "s");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("A &lt;b&gt; &amp; C"));
        assert!(svg.contains(">boom<"));
        assert_eq!(svg.matches("<rect").count(), 2, "background + one bar");
    }
}
