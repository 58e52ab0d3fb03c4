//! `--plot`: latency against throughput across a sweep, as PNG or SVG.
//!
//! One line per percentile (p50, p90, p99), one point per level, each point labelled with its
//! concurrency or rate: the curve shows where added load stops buying throughput and starts
//! costing latency. Text uses an embedded font, so no system fonts are needed.

use std::path::Path;

use plotters::{
    coord::Shift,
    prelude::*,
    style::{register_font, FontStyle},
};

use crate::report::LevelReport;

/// Size of the image, in pixels.
const SIZE: (u32, u32) = (960, 600);

/// The family the embedded font is registered under.
const FONT: &str = "sans-serif";

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name does not say PNG or SVG.
    #[error("plot file '{0}' must end in .png or .svg")]
    Format(String),
    /// There is nothing to draw.
    #[error("no levels to plot")]
    Empty,
    /// Drawing or writing failed.
    #[error("drawing '{path}': {message}")]
    Draw {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Draws `levels` to `path`, a `.png` or `.svg` file.
pub fn plot_latency_vs_throughput(levels: &[LevelReport], path: &Path) -> Result<(), PlotError> {
    let shown = path.display().to_string();
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if levels.is_empty() {
        return Err(PlotError::Empty);
    }
    // Registering twice replaces the same bytes; it only fails on a malformed font.
    register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| PlotError::Draw { path: shown.clone(), message: "the embedded font did not load".into() })?;
    let result = match extension.as_deref() {
        Some("png") => draw(BitMapBackend::new(path, SIZE).into_drawing_area(), levels),
        Some("svg") => draw(SVGBackend::new(path, SIZE).into_drawing_area(), levels),
        _ => return Err(PlotError::Format(shown)),
    };
    result.map_err(|message| PlotError::Draw { path: shown, message })
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, levels: &[LevelReport]) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let ms = |us: u64| us as f64 / 1000.0;
    let max_x = levels.iter().map(|l| l.throughput_infer_per_s).fold(0.0, f64::max).max(1.0) * 1.1;
    let max_y = levels.iter().map(|l| ms(l.latency_us.p99)).fold(0.0, f64::max).max(0.001) * 1.15;
    let first = &levels[0];
    let mode = if first.request_rate.is_some() { "request rate" } else { "concurrency" };
    let caption = format!("{} ({}, batch {}): latency vs throughput by {mode}", first.model, first.protocol, first.batch_size);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("throughput (infer/s)")
        .y_desc("latency (ms)")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(e)?;

    type Percentile = fn(&LevelReport) -> u64;
    let lines: [(&str, Percentile, RGBColor); 3] = [
        ("p50", |l| l.latency_us.p50, RGBColor(31, 119, 180)),
        ("p90", |l| l.latency_us.p90, RGBColor(255, 127, 14)),
        ("p99", |l| l.latency_us.p99, RGBColor(214, 39, 40)),
    ];
    for (name, value, color) in lines {
        let points: Vec<(f64, f64)> = levels.iter().map(|l| (l.throughput_infer_per_s, ms(value(l)))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(e)?;
    }
    // Label each level at its p99 point.
    chart
        .draw_series(levels.iter().map(|l| {
            Text::new(
                match l.request_rate {
                    Some(r) => format!("r={r:.0}"),
                    None => format!("c={}", l.concurrency.unwrap_or(0)),
                },
                (l.throughput_infer_per_s, ms(l.latency_us.p99)),
                (FONT, 12).into_font().color(&BLACK),
            )
        }))
        .map_err(e)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::LatencySummary;

    fn level(concurrency: usize, throughput: f64, p99: u64) -> LevelReport {
        LevelReport {
            model: "m".into(),
            protocol: "http".into(),
            concurrency: Some(concurrency),
            request_rate: None,
            batch_size: 1,
            duration_s: 1.0,
            windows: 3,
            stable: Some(true),
            requests: 10,
            requests_per_s: throughput,
            throughput_infer_per_s: throughput,
            latency_us: LatencySummary { p50: p99 / 2, p90: p99 * 3 / 4, p95: p99 * 9 / 10, p99, max: p99 * 2, mean: p99 as f64 / 2.0 },
            errors: BTreeMap::new(),
            delayed: 0,
            server: None,
        }
    }

    #[test]
    fn draws_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("quiver-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let levels = [level(1, 1000.0, 900), level(4, 3500.0, 1500), level(16, 5000.0, 6000)];
        let png = dir.join("sweep.png");
        plot_latency_vs_throughput(&levels, &png).unwrap();
        assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
        let svg = dir.join("sweep.SVG");
        plot_latency_vs_throughput(&levels, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("c=16") && text.contains("p99"), "labels and legend drawn");
        assert!(matches!(plot_latency_vs_throughput(&levels, &dir.join("x.jpg")), Err(PlotError::Format(_))));
        assert!(matches!(plot_latency_vs_throughput(&[], &png), Err(PlotError::Empty)));
        // A single idle level (no throughput, no latency) still draws.
        plot_latency_vs_throughput(&[level(1, 0.0, 0)], &png).unwrap();
        assert!(plot_latency_vs_throughput(&levels, &dir.join("missing/dir/x.png")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
