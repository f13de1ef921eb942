//! PNG line charts: panels of per-epoch curves drawn with `plotters` into an RGB buffer and
//! written with the `image` crate. Text uses `DejaVuSans-ascii.ttf` beside this file (DejaVu
//! Sans cut down to ASCII, 13 KB, licence in `FONT-LICENSE.txt`), so no system font is needed.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::cli::{AnyResult, Cli};

const FONT: &[u8] = include_bytes!("DejaVuSans-ascii.ttf");

/// Ten distinguishable colours (matplotlib's "tab10").
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend text.
    pub label: String,
    /// (x, y) points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// Dashed rather than solid.
    pub dashed: bool,
}

impl Series {
    /// A solid line.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Series {
        Series {
            label: label.into(),
            points,
            color,
            dashed: false,
        }
    }

    /// The same line, dashed.
    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }
}

/// Where a panel's legend goes.
#[derive(Clone, Copy, Debug)]
pub enum Legend {
    /// Lower right (rising curves such as accuracy).
    LowerRight,
    /// Upper right (falling curves such as loss).
    UpperRight,
    /// No legend.
    None,
}

/// One chart of a figure.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Caption above the chart.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Category names for x = 0, 1, 2...; `None` for a numeric x axis.
    pub x_ticks: Option<Vec<String>>,
    /// Legend placement.
    pub legend: Legend,
    /// Decimals of the y tick labels.
    pub y_decimals: usize,
}

impl Panel {
    /// A panel with a numeric x axis, fitted y range and the legend lower right.
    pub fn new(title: impl Into<String>, x_label: &str, y_label: &str) -> Panel {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            y_range: None,
            x_ticks: None,
            legend: Legend::LowerRight,
            y_decimals: 2,
        }
    }

    /// Adds a line.
    pub fn with(mut self, s: Series) -> Panel {
        self.series.push(s);
        self
    }
}

/// Points `(epoch, value)` for epochs 1, 2, 3...
pub fn per_epoch(values: impl IntoIterator<Item = f64>) -> Vec<(f64, f64)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, v))
        .collect()
}

fn span(values: impl Iterator<Item = f64>, pad_frac: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        let d = if lo.abs() > 1e-9 {
            lo.abs() * 0.05
        } else {
            0.5
        };
        return (lo - d, hi + d);
    }
    let pad = (hi - lo) * pad_frac;
    (lo - pad, hi + pad)
}

/// The two panels of a single training run: loss and accuracy per epoch, training (dropout
/// on) solid and test dashed.
pub fn history_panels(history: &wgnn::nn::History) -> [Panel; 2] {
    let ep = &history.epochs;
    let val = |f: fn(&wgnn::nn::Evaluation) -> f64| {
        per_epoch(
            ep.iter()
                .map(move |e| e.validation.as_ref().map_or(f64::NAN, f)),
        )
    };
    let mut loss = Panel::new("loss", "epoch", "cross-entropy")
        .with(Series::new(
            "train (dropout on)",
            per_epoch(ep.iter().map(|e| e.loss)),
            0,
        ))
        .with(Series::new("test", val(|v| v.loss), 1).dashed());
    loss.legend = Legend::UpperRight;
    let acc = Panel::new("accuracy", "epoch", "accuracy")
        .with(Series::new(
            "train (dropout on)",
            per_epoch(ep.iter().map(|e| e.accuracy)),
            0,
        ))
        .with(Series::new("test", val(|v| v.accuracy), 1).dashed());
    [loss, acc]
}

/// Where an example draws its chart, from its `--plot FILE` and `--docs` options:
/// - `--plot FILE`: that file;
/// - `--docs`: `docs/NAME.png` in this repository, the picture README.md shows (refused with
///   `--quick`, whose one-epoch curve must not replace it);
/// - neither: `NAME.png` in the current directory (`NAME-quick.png` with `--quick`), so a run
///   in a fresh clone changes no tracked file (.gitignore lists `/*.png` for runs from the
///   repository root).
pub fn plot_path(cli: &mut Cli, name: &str, quick: bool) -> Result<PathBuf, String> {
    let given: Option<PathBuf> = cli.value("--plot")?;
    let docs = cli.flag("--docs");
    match (given, docs) {
        (Some(_), true) => Err("--plot and --docs both say where to draw; give one".into()),
        (None, true) if quick => Err(format!(
            "--docs redraws docs/{name}.png, the full run's picture; drop --quick"
        )),
        (None, true) => Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(format!("{name}.png"))),
        (Some(path), false) => Ok(path),
        (None, false) if quick => Ok(Path::new(".").join(format!("{name}-quick.png"))),
        (None, false) => Ok(Path::new(".").join(format!("{name}.png"))),
    }
}

/// Draws `panels` in a grid `cols` wide under `title`, writes a PNG to `path` (creating its
/// folder) and says where.
pub fn save_chart(path: &Path, title: &str, panels: &[Panel], cols: usize) -> AnyResult {
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let (pw, ph) = (520u32, 380u32);
    let size = (pw * cols as u32, ph * rows as u32 + HEAD);
    save_titled(path, (title, 24), size, |body| {
        let cells = body.split_evenly((rows, cols));
        for (panel, area) in panels.iter().zip(cells.iter()) {
            draw_panel(area, panel).map_err(|e| format!("drawing {:?}: {e}", panel.title))?;
        }
        Ok(())
    })
}

/// The height of the title band [`save_titled`] draws above the body.
pub const HEAD: u32 = 50;

/// A white `w` x `h` picture with the title `(text, font size)` in a band [`HEAD`] pixels
/// tall and `body` drawing the rest, written to `path` as PNG (see [`save_rgb`]).
pub fn save_titled(
    path: &Path,
    (title, font): (&str, u32),
    (w, h): (u32, u32),
    body: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> AnyResult,
) -> AnyResult {
    register_font()?;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, rest) = root.split_vertically(HEAD);
        top.draw(&Text::new(
            title.to_string(),
            (20, 14),
            ("sans-serif", font).into_font().color(&BLACK),
        ))
        .map_err(|e| e.to_string())?;
        body(&rest)?;
        root.present().map_err(|e| e.to_string())?;
    }
    save_rgb(path, &buf, w, h)
}

/// Makes the embedded font the `sans-serif` of every chart (before drawing any text).
pub fn register_font() -> AnyResult {
    // Registering twice is harmless; the map keeps one font per (family, style).
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "the embedded font DejaVuSans-ascii.ttf is not a valid TrueType file")?;
    Ok(())
}

/// Writes an RGB buffer of `w` x `h` pixels to `path` as PNG (creating its folder) and says
/// where.
pub fn save_rgb(path: &Path, buf: &[u8], w: u32, h: u32) -> AnyResult {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    image::save_buffer(path, buf, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("plot written to {}", path.display());
    Ok(())
}

/// Draws one panel into `area` (as [`save_chart`] draws each of its panels).
pub fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Panel,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let integral_x = p.x_ticks.is_none() && xs.clone().all(|x| (x - x.round()).abs() < 1e-9);
    let (x0, x1) = match &p.x_ticks {
        Some(t) => (-0.5, t.len() as f64 - 0.5),
        None if integral_x => {
            let (a, b) = span(xs, 0.0);
            if b - a < 0.5 {
                (a.round() - 0.5, b.round() + 0.5)
            } else {
                (a.round() - 0.25, b.round() + 0.25)
            }
        }
        None => span(xs, 0.02),
    };
    let (y0, y1) = p.y_range.unwrap_or_else(|| {
        span(
            p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1)),
            0.08,
        )
    });
    // Enough decimals that neighbouring ticks (about 8 over the range) differ.
    let step = (y1 - y0) / 8.0;
    let decimals = (-step.log10()).ceil().clamp(0.0, 4.0) as usize;
    let decimals = decimals.max(p.y_decimals);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let ticks = p.x_ticks.clone();
    let x_fmt = move |x: &f64| -> String {
        match &ticks {
            Some(t) => {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < t.len() {
                    t[i as usize].clone()
                } else {
                    String::new()
                }
            }
            None if integral_x => {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            }
            None => format!("{x:.2}"),
        }
    };
    let n_x = match &p.x_ticks {
        Some(t) => t.len(),
        None => ((x1 - x0).round() as usize + 1).clamp(2, 11),
    };
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_labels(n_x)
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y| format!("{y:.*}", decimals))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(246, 246, 246))
        .bold_line_style(RGBColor(220, 220, 220))
        .draw()
        .map_err(err)?;
    for s in &p.series {
        let color = PALETTE[s.color % PALETTE.len()];
        let style = color.stroke_width(2);
        let pts = s.points.clone();
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], color.stroke_width(2))
                        + PathElement::new(vec![(12, 0), (20, 0)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&q| Circle::new(q, 3, color.filled())))
                .map_err(err)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts, style).point_size(3))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
    }
    let pos = match p.legend {
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
        Legend::UpperRight => SeriesLabelPosition::UpperRight,
        Legend::None => return Ok(()),
    };
    chart
        .configure_series_labels()
        .position(pos)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(err)?;
    Ok(())
}
