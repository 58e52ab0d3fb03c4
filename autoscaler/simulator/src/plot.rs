//! Plots a simulation: the load and queued requests above, desired and ready replicas below,
//! panic periods shaded in both. PNG or SVG, chosen by the file's extension. Text is drawn
//! with the embedded DejaVu Sans, so no system font is needed.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use plotters::{coord::Shift, prelude::*};
use thiserror::Error;

use quiver_autoscaler::config::ScaleMetric;

use crate::simulate::{periods, SimulatedSecond};

/// The font family every text of the plot uses; registered from the embedded DejaVu Sans.
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 800);
const LOAD_COLOR: RGBColor = RGBColor(31, 119, 180);
const QUEUED_COLOR: RGBColor = RGBColor(214, 39, 40);
const DESIRED_COLOR: RGBColor = RGBColor(255, 127, 14);
const READY_COLOR: RGBColor = RGBColor(44, 160, 44);
const PANIC_COLOR: RGBColor = RGBColor(255, 200, 0);

/// Why a plot could not be drawn.
#[derive(Debug, Error)]
pub enum PlotError {
    /// The file name ends in neither `.png` nor `.svg`.
    #[error("cannot plot to {0}: the file name must end in .png or .svg")]
    Format(PathBuf),
    /// The embedded font could not be loaded.
    #[error("cannot load the embedded font: {0}")]
    Font(String),
    /// Drawing or writing the file failed.
    #[error("cannot draw {path}: {reason}")]
    Draw {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The image formats a plot can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    /// A PNG bitmap.
    Png,
    /// An SVG document.
    Svg,
}

impl PlotFormat {
    /// The format `path`'s extension names (case-insensitive).
    pub fn of(path: &Path) -> Result<Self, PlotError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("png") => Ok(PlotFormat::Png),
            Some("svg") => Ok(PlotFormat::Svg),
            _ => Err(PlotError::Format(path.to_path_buf())),
        }
    }
}

/// Registers the embedded font under [`FONT`] once per process.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "DejaVu Sans is not a valid font".to_string())
        })
        .clone()
        .map_err(PlotError::Font)
}

/// Draws `seconds` (a simulation of a `metric` trace) to `path`, titled `title`.
pub fn plot(path: &Path, title: &str, metric: ScaleMetric, seconds: &[SimulatedSecond]) -> Result<(), PlotError> {
    let format = PlotFormat::of(path)?;
    register_font()?;
    let draw_error = |reason: String| PlotError::Draw { path: path.to_path_buf(), reason };
    match format {
        PlotFormat::Png => {
            let root = BitMapBackend::new(path, SIZE).into_drawing_area();
            draw(&root, title, metric, seconds).map_err(draw_error)?;
            root.present().map_err(|e| draw_error(e.to_string()))
        }
        PlotFormat::Svg => {
            let root = SVGBackend::new(path, SIZE).into_drawing_area();
            draw(&root, title, metric, seconds).map_err(draw_error)?;
            root.present().map_err(|e| draw_error(e.to_string()))
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    metric: ScaleMetric,
    seconds: &[SimulatedSecond],
) -> Result<(), String> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, (FONT, 22)).map_err(e)?;
    let (upper, lower) = root.split_vertically(SIZE.1 / 2 - 20);

    let start = seconds.first().map_or(0, |s| s.time_s);
    let end = seconds.last().map_or(1, |s| s.time_s + 1).max(start + 1);
    let panics = periods(seconds, |s| s.panic);

    let load_max = seconds.iter().map(|s| s.load.max(s.queued)).fold(1.0, f64::max) * 1.1;
    let x_range = start as f64..end as f64;
    let load_desc = format!("{metric} ({})", metric.unit());
    let load_axis = Axis { max: load_max, desc: &load_desc, label: number_label };
    let mut chart = panel(&upper, x_range.clone(), load_axis, "", &panics).map_err(e)?;
    chart
        .draw_series(AreaSeries::new(seconds.iter().map(|s| (s.time_s as f64, s.queued)), 0.0, QUEUED_COLOR.mix(0.35)))
        .map_err(e)?
        .label("queued requests")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], QUEUED_COLOR.mix(0.35).filled()));
    chart
        .draw_series(LineSeries::new(seconds.iter().map(|s| (s.time_s as f64, s.load)), LOAD_COLOR.stroke_width(2)))
        .map_err(e)?
        .label(format!("load ({metric})"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], LOAD_COLOR.stroke_width(2)));
    legend(&mut chart).map_err(e)?;

    let replicas_max = seconds.iter().map(|s| s.desired.max(s.ready)).max().unwrap_or(0);
    let replicas_max = (f64::from(replicas_max) * 1.15).max(f64::from(replicas_max) + 1.0);
    let replicas_axis = Axis { max: replicas_max, desc: "replicas", label: count_label };
    let mut chart = panel(&lower, x_range, replicas_axis, "time (s)", &panics).map_err(e)?;
    for (name, color, value) in [
        ("desired replicas", DESIRED_COLOR, (|s: &SimulatedSecond| s.desired) as fn(&SimulatedSecond) -> u32),
        ("ready replicas", READY_COLOR, |s: &SimulatedSecond| s.ready),
    ] {
        chart
            .draw_series(LineSeries::new(steps(seconds, value), color.stroke_width(2)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    legend(&mut chart).map_err(e)?;
    Ok(())
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// A panel's y axis: its top, description and tick labels.
struct Axis<'a> {
    max: f64,
    desc: &'a str,
    label: fn(&f64) -> String,
}

/// One panel over time: axes, mesh, and the panic periods shaded behind the series.
fn panel<'a, DB: DrawingBackend + 'a>(
    area: &'a DrawingArea<DB, Shift>,
    x_range: std::ops::Range<f64>,
    y: Axis<'_>,
    x_desc: &str,
    panics: &[(u64, u64)],
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart =
        ChartBuilder::on(area).margin(12).x_label_area_size(40).y_label_area_size(70).build_cartesian_2d(x_range, 0.0..y.max)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y.desc)
        .x_label_formatter(&number_label)
        .y_label_formatter(&y.label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    shade_panics(&mut chart, panics, y.max)?;
    Ok(chart)
}

/// Shades each panic period over the chart's height, with one legend entry.
fn shade_panics<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    panics: &[(u64, u64)],
    height: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let fill = PANIC_COLOR.mix(0.25).filled();
    let series = chart.draw_series(panics.iter().map(|&(from, to)| Rectangle::new([(from as f64, 0.0), (to as f64, height)], fill)))?;
    if !panics.is_empty() {
        series.label("panic mode").legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], fill));
    }
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
}

/// A tick label without trailing zeros: `600`, `0.5`.
fn number_label(v: &f64) -> String {
    format!("{}", (v * 100.0).round() / 100.0)
}

/// A tick label on a replica axis: whole numbers only (half a replica means nothing).
fn count_label(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v}")
    } else {
        String::new()
    }
}

/// A step line through a per-second count: flat within a second, vertical at its start.
fn steps(seconds: &[SimulatedSecond], value: fn(&SimulatedSecond) -> u32) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(seconds.len() * 2);
    for s in seconds {
        let y = f64::from(value(s));
        points.push((s.time_s as f64, y));
        points.push((s.time_s as f64 + 1.0, y));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(PlotFormat::of(Path::new("a/b.PNG")).unwrap(), PlotFormat::Png);
        assert_eq!(PlotFormat::of(Path::new("b.svg")).unwrap(), PlotFormat::Svg);
        for bad in ["b.jpg", "b", "png"] {
            let err = PlotFormat::of(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains(".png or .svg"), "{bad}: {err}");
        }
    }

    #[test]
    fn tick_labels_drop_needless_decimals() {
        assert_eq!(number_label(&600.0), "600");
        assert_eq!(number_label(&0.5), "0.5");
        assert_eq!(count_label(&3.0), "3");
        assert_eq!(count_label(&2.5), "");
    }

    #[test]
    fn steps_hold_each_value_for_its_second() {
        let s = |time_s, desired| SimulatedSecond {
            time_s,
            load: 0.0,
            desired,
            ready: 0,
            panic: false,
            queued: 0.0,
            activator_in_path: false,
            stable_average: 0.0,
            panic_average: 0.0,
        };
        assert_eq!(steps(&[s(3, 1), s(4, 2)], |s| s.desired), vec![(3.0, 1.0), (4.0, 1.0), (4.0, 2.0), (5.0, 2.0)]);
    }
}
