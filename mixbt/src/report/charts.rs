//! Charts with plotters (SVG strings; PNG through the bitmap backend): loss components, k-NN
//! accuracy, cross-correlation heat maps, λ ablations, a PCA of embeddings, grids of views.

use std::sync::Once;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use plotters::prelude::*;

use super::display::{Png, Svg};
use crate::train::History;
use crate::{Error, Result};

static FONT: Once = Once::new();

/// Register the bundled DejaVu Sans as the "sans-serif" font (plotters' ab_glyph backend).
fn fonts() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, bytes);
    });
}

fn perr<E: std::fmt::Display>(e: E) -> Error {
    Error::msg(format!("chart: {e}"))
}

const PALETTE: [RGBColor; 10] = [
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

/// A colour for series/class `i`.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// How an entry of a side legend is drawn.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Line(RGBAColor, u32),
    Dot(RGBAColor),
    Dashed(RGBAColor),
    Block(RGBAColor),
}

const REF_GREY: RGBColor = RGBColor(110, 110, 110);

/// A legend in its own panel beside the plot (never over the data): one row per entry from
/// `top` down.
fn side_legend<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, entries: &[(String, Mark)], top: i32) -> Result<()> {
    let font = ("sans-serif", 14).into_font();
    let mut y = top;
    for (name, mark) in entries {
        match *mark {
            Mark::Line(c, w) => area.draw(&PathElement::new(vec![(6, y), (34, y)], c.stroke_width(w))).map_err(perr)?,
            Mark::Dot(c) => area.draw(&Circle::new((20, y), 4, c.filled())).map_err(perr)?,
            Mark::Dashed(c) => {
                for x in [6, 17, 28] {
                    area.draw(&PathElement::new(vec![(x, y), (x + 6, y)], c.stroke_width(1))).map_err(perr)?;
                }
            }
            Mark::Block(c) => area.draw(&Rectangle::new([(12, y - 6), (28, y + 6)], c.filled())).map_err(perr)?,
        }
        area.draw(&Text::new(name.clone(), (42, y - 8), font.clone())).map_err(perr)?;
        y += 24;
    }
    Ok(())
}

/// The references every accuracy chart carries: chance (`100 / classes`) and, when measured,
/// the randomly initialised network.
pub fn accuracy_references(classes: usize, random_init: Option<f64>) -> Vec<(String, f64)> {
    let mut refs = vec![];
    if classes > 0 {
        let c = 100.0 / classes as f64;
        refs.push((format!("chance ({c:.0} %)"), c));
    }
    if let Some(r) = random_init.filter(|r| r.is_finite()) {
        refs.push((format!("random network ({r:.1} %)"), r));
    }
    refs
}

/// Dashed grey horizontal lines across `x0..x1`, each labelled at the right end.
fn draw_references<DB: DrawingBackend, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<DB, Cartesian2d<X, Y>>,
    references: &[(String, f64)],
    x0: f64,
    x1: f64,
) -> Result<()> {
    for (label, y) in references {
        let n = 60;
        let step = (x1 - x0) / n as f64;
        chart
            .draw_series((0..n).step_by(2).map(|i| PathElement::new(vec![(x0 + i as f64 * step, *y), (x0 + (i + 1) as f64 * step, *y)], REF_GREY.stroke_width(1))))
            .map_err(perr)?;
        let style = TextStyle::from(("sans-serif", 14).into_font()).color(&REF_GREY).pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Right, plotters::style::text_anchor::VPos::Bottom));
        chart.draw_series(std::iter::once(Text::new(label.clone(), (x1 - (x1 - x0) * 0.01, *y), style))).map_err(perr)?;
    }
    Ok(())
}

/// Named line series `(name, [(x, y)])` on one chart, the legend beside the plot.
pub fn lines_svg(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)], log_y: bool) -> Result<Svg> {
    lines_ref_svg(title, x_label, y_label, series, log_y, &[])
}

/// [`lines_svg`] with dashed horizontal reference lines `(label, y)` (chance, the random
/// network: [`accuracy_references`]). When every x is a whole number (steps, epochs) the x
/// ticks are whole numbers too.
pub fn lines_ref_svg(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)], log_y: bool, references: &[(String, f64)]) -> Result<Svg> {
    fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (plot, legend) = root.split_horizontally(690);
        let ok = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!log_y || y > 0.0);
        let pts: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|&(x, y)| ok(x, y)).collect();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in &pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for (_, y) in references.iter().filter(|r| r.1.is_finite() && (!log_y || r.1 > 0.0)) {
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() {
            (y0, y1) = (if log_y { 0.1 } else { 0.0 }, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + y0.abs().max(1e-3);
        }
        let whole_x = !pts.is_empty() && pts.iter().all(|p| p.0.fract() == 0.0);
        let x_ticks = if whole_x { ((x1 - x0) as usize + 1).clamp(2, 10) } else { 10 };
        let pad = if log_y { 0.0 } else { (y1 - y0) * 0.05 };
        let mut b = ChartBuilder::on(&plot);
        b.caption(title, ("sans-serif", 18)).margin(10).x_label_area_size(44).y_label_area_size(64);
        let fmt_x = |x: &f64| if !whole_x { format!("{x}") } else if x.fract() == 0.0 { format!("{x:.0}") } else { String::new() };
        let mut entries = vec![];
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .x_labels(x_ticks)
                    .x_label_formatter(&fmt_x)
                    .label_style(("sans-serif", 14))
                    .axis_desc_style(("sans-serif", 14))
                    .draw()
                    .map_err(perr)?;
                draw_references(&mut chart, references, x0, x1)?;
                for (i, (name, p)) in series.iter().enumerate() {
                    let c = color(i);
                    let data: Vec<(f64, f64)> = p.iter().copied().filter(|&(x, y)| ok(x, y)).collect();
                    if data.len() == 1 {
                        chart.draw_series(data.iter().map(|&(x, y)| Circle::new((x, y), 4, c.filled()))).map_err(perr)?;
                        entries.push((name.clone(), Mark::Dot(c.to_rgba())));
                    } else {
                        chart.draw_series(LineSeries::new(data, c.stroke_width(2))).map_err(perr)?;
                        entries.push((name.clone(), Mark::Line(c.to_rgba(), 2)));
                    }
                }
            }};
        }
        if log_y {
            draw!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(perr)?);
        } else {
            draw!(b.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(perr)?);
        }
        if !references.is_empty() {
            entries.push(("reference".into(), Mark::Dashed(REF_GREY.to_rgba())));
        }
        side_legend(&legend, &entries, 60)?;
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}
/// The loss the optimiser minimises and the method's components of it (every metric whose name
/// starts with `loss_`: Mixed Barlow Twins' `loss_bt` and `loss_reg`, SimCLR's and BYOL's two
/// directions, W-MSE's iterations) over the steps of a history, smoothed with a running mean
/// over `smooth` steps. Works for any method: nothing here knows one.
pub fn loss_chart(h: &History, smooth: usize) -> Result<Svg> {
    let sm = |f: &dyn Fn(&crate::train::StepStats) -> f64| -> Vec<(f64, f64)> {
        let w = smooth.max(1);
        let v: Vec<f64> = h.rows.iter().map(f).collect();
        (0..v.len()).map(|i| (h.rows[i].step as f64, v[i.saturating_sub(w - 1)..=i].iter().sum::<f64>() / (i + 1 - i.saturating_sub(w - 1)) as f64)).collect()
    };
    let components: Vec<String> = h.metric_names().into_iter().filter(|n| n.starts_with("loss_")).collect();
    let mut series = vec![("loss (minimised)".to_string(), sm(&|r| r.loss))];
    let mut drawn = vec![];
    for c in &components {
        let s = sm(&|r| r.metric(c));
        // A component that stays at 0 (plain Barlow Twins' loss_reg) has no place on a log scale.
        if s.iter().any(|&(_, v)| v > 0.0) {
            series.push((c.clone(), s));
            drawn.push(c.as_str());
        }
    }
    let parts = if drawn.is_empty() { "no components reported".to_string() } else { format!("its components as the method reports them: {}", drawn.join(", ")) };
    // A log scale when the lines span more than a decade (Barlow Twins' parts); within one
    // decade a log axis has no tick to label (SimCLR, BYOL, W-MSE), so a linear one.
    let (lo, hi) = series.iter().flat_map(|(_, p)| p.iter().map(|&(_, v)| v)).filter(|v| v.is_finite() && *v > 0.0).fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let log = hi > 10.0 * lo;
    let scale = if log { "log scale" } else { "linear scale" };
    Ok(lines_svg("Training loss (the optimiser minimises loss)", "step", &format!("loss ({scale})"), &series, log)?.caption(&format!(
        "Running mean over {} steps, {scale}. The optimiser minimises only `loss`; the other lines are {parts}.",
        smooth.max(1)
    )))
}

/// k-NN top-1/top-5 accuracy over the steps where it was evaluated, with chance (`classes`,
/// when known) and the randomly initialised network as dashed references.
pub fn knn_chart(h: &History, random_init: Option<f64>, classes: Option<usize>) -> Result<Svg> {
    let t1: Vec<(f64, f64)> = h.rows.iter().filter_map(|r| r.knn_top1.map(|v| (r.step as f64, v))).collect();
    let t5: Vec<(f64, f64)> = h.rows.iter().filter_map(|r| r.knn_top5.map(|v| (r.step as f64, v))).collect();
    let series = vec![("k-NN top-1".to_string(), t1), ("k-NN top-5".to_string(), t5)];
    let refs = accuracy_references(classes.unwrap_or(0), random_init);
    Ok(lines_ref_svg("k-NN accuracy over pre-training (k = 200, T = 0.5)", "step", "accuracy (%)", &series, false, &refs)?
        .caption("Weighted k-NN of the backbone's features (bank: the train split, evaluated on the test split) at the steps where it ran; dashed: chance and the same network before training (top-1)."))
}

/// The blue–white–red colour of `x` on the scale `lo..hi` (white at the middle).
fn diverging(x: f64, lo: f64, hi: f64) -> RGBColor {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    if t < 0.5 {
        let s = t * 2.0;
        RGBColor((255.0 * s) as u8, (255.0 * s) as u8, 255)
    } else {
        let s = (1.0 - t) * 2.0;
        RGBColor(255, (255.0 * s) as u8, (255.0 * s) as u8)
    }
}

/// A heat map of a matrix (e.g. the cross-correlation C), values clamped to [lo, hi] on a
/// blue–white–red scale, with a colour bar that reads the scale off; row 0 at the top.
pub fn heatmap_svg(title: &str, m: &Tensor, lo: f64, hi: f64) -> Result<Svg> {
    fonts();
    let v: Vec<Vec<f32>> = m.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2()?;
    let (r, c) = (v.len(), v.first().map(|x| x.len()).unwrap_or(0));
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (500, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (left, right) = root.split_horizontally(420);
        let mut chart = ChartBuilder::on(&left)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(32)
            .build_cartesian_2d(0..c, 0..r)
            .map_err(perr)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .label_style(("sans-serif", 14))
            .y_label_formatter(&|y| format!("{}", r.saturating_sub(*y)))
            .draw()
            .map_err(perr)?;
        chart
            .draw_series(v.iter().enumerate().flat_map(|(i, row)| row.iter().enumerate().map(move |(j, x)| (i, j, *x))).map(|(i, j, x)| {
                Rectangle::new([(j, r - 1 - i), (j + 1, r - i)], diverging(x as f64, lo, hi).filled())
            }))
            .map_err(perr)?;
        // The colour bar: the scale from lo (bottom) to hi (top), with ticks.
        let mut bar = ChartBuilder::on(&right)
            .margin_top(40)
            .margin_bottom(32)
            .margin_right(30)
            .y_label_area_size(36)
            .build_cartesian_2d(0.0..1.0, lo..hi)
            .map_err(perr)?;
        bar.configure_mesh().disable_mesh().disable_x_axis().y_labels(5).label_style(("sans-serif", 14)).draw().map_err(perr)?;
        let steps = 100;
        bar.draw_series((0..steps).map(|k| {
            let a = lo + (hi - lo) * k as f64 / steps as f64;
            let b = lo + (hi - lo) * (k + 1) as f64 / steps as f64;
            Rectangle::new([(0.0, a), (1.0, b)], diverging((a + b) / 2.0, lo, hi).filled())
        }))
        .map_err(perr)?;
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}

/// Values per category, one dot per seed (jittered sideways) and the mean as a marker joined
/// by a line, with the mean's value printed; an optional horizontal reference line
/// `(label, value)` (e.g. the Barlow Twins baseline). The y range fits the data, so differences
/// of a point are visible. Categories are evenly spaced (λ values are not on a linear scale),
/// and the x axis says so; the legend sits beside the plot.
pub fn spread_svg(title: &str, x_label: &str, y_label: &str, categories: &[String], values: &[Vec<f64>], reference: Option<(&str, f64)>) -> Result<Svg> {
    let refs: Vec<(String, f64)> = reference.iter().map(|&(_, v)| (format!("{v:.2}"), v)).collect();
    spread_chart(title, x_label, y_label, categories, values, &refs, reference.map(|r| r.0).unwrap_or("reference"), true)
}

/// [`spread_svg`] with dashed references `(label, y)` labelled at the right end (chance, the
/// random network: [`accuracy_references`]; a baseline). `join`: a line joins the means, for
/// categories that are a progression (λ values); without it (methods, data sets) each mean is
/// a short bar of its own.
pub fn spread_ref_svg(title: &str, x_label: &str, y_label: &str, categories: &[String], values: &[Vec<f64>], references: &[(String, f64)], join: bool) -> Result<Svg> {
    spread_chart(title, x_label, y_label, categories, values, references, "reference", join)
}

#[allow(clippy::too_many_arguments)]
fn spread_chart(title: &str, x_label: &str, y_label: &str, categories: &[String], values: &[Vec<f64>], references: &[(String, f64)], ref_name: &str, join: bool) -> Result<Svg> {
    fonts();
    let n = categories.len().max(1);
    let all: Vec<f64> = values.iter().flatten().copied().chain(references.iter().map(|r| r.1)).filter(|v| v.is_finite()).collect();
    let (mut y0, mut y1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.15).max(0.5);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (plot, legend) = root.split_horizontally(690);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 17))
            .margin(10)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), y0..y1)
            .map_err(perr)?;
        let cats = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 { cats.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .x_desc(format!("{x_label} (categories, evenly spaced)"))
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        let mut entries = vec![];
        let seeds = values.iter().map(|v| v.len()).max().unwrap_or(0);
        let c = color(0);
        for (i, ys) in values.iter().enumerate() {
            let dots = ys.iter().enumerate().map(|(k, &y)| {
                let dx = if seeds > 1 { (k as f64 - (seeds - 1) as f64 / 2.0) * 0.06 } else { 0.0 };
                Circle::new((i as f64 + dx, y), 4, c.mix(0.55).filled())
            });
            chart.draw_series(dots).map_err(perr)?;
        }
        if seeds > 1 {
            entries.push((format!("one seed ({seeds})"), Mark::Dot(c.mix(0.55))));
        }
        let means: Vec<(f64, f64)> = values.iter().enumerate().filter(|(_, ys)| !ys.is_empty()).map(|(i, ys)| (i as f64, ys.iter().sum::<f64>() / ys.len() as f64)).collect();
        let c1 = color(1);
        if join {
            chart.draw_series(LineSeries::new(means.clone(), c1.stroke_width(2)).point_size(5)).map_err(perr)?;
        } else {
            chart.draw_series(means.iter().map(|&(x, y)| PathElement::new(vec![(x - 0.18, y), (x + 0.18, y)], c1.stroke_width(3)))).map_err(perr)?;
        }
        entries.push((if seeds > 1 { "mean over seeds" } else { "value" }.to_string(), Mark::Line(c1.to_rgba(), 2)));
        chart
            .draw_series(means.iter().map(|&(x, y)| {
                let style = TextStyle::from(("sans-serif", 14).into_font()).pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Left, plotters::style::text_anchor::VPos::Bottom));
                EmptyElement::at((x, y)) + Text::new(format!("{y:.2}"), (8, -6), style)
            }))
            .map_err(perr)?;
        if !references.is_empty() {
            draw_references(&mut chart, references, -0.5, n as f64 - 0.5)?;
            entries.push((ref_name.to_string(), Mark::Dashed(REF_GREY.to_rgba())));
        }
        side_legend(&legend, &entries, 60)?;
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}

/// Bars `(label, value)` on a categorical axis.
pub fn bars_svg(title: &str, y_label: &str, bars: &[(String, f64)]) -> Result<Svg> {
    bars_ref_svg(title, y_label, bars, &[])
}

/// [`bars_svg`] with dashed horizontal references `(label, y)` (accuracy charts:
/// [`accuracy_references`]), labelled at the right end and in a legend beside the plot.
pub fn bars_ref_svg(title: &str, y_label: &str, bars: &[(String, f64)], references: &[(String, f64)]) -> Result<Svg> {
    fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (820, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (plot, legend) = if references.is_empty() { (root.clone(), None) } else {
            let (a, b) = root.split_horizontally(690);
            (a, Some(b))
        };
        let ymax = bars.iter().map(|b| b.1).chain(references.iter().map(|r| r.1)).fold(0.0f64, f64::max).max(1e-9) * 1.15;
        let n = bars.len().max(1);
        // A numeric x axis, bar i centred on x = i (a segmented axis of one segment has no
        // width, and gave a single bar a negative one).
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..ymax)
            .map_err(perr)?;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .y_desc(y_label)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 { labels.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| Rectangle::new([(i as f64 - 0.35, 0.0), (i as f64 + 0.35, *v)], color(i).filled())))
            .map_err(perr)?;
        // Each value centred just above its bar.
        let anchor = plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Center, plotters::style::text_anchor::VPos::Bottom);
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                EmptyElement::at((i as f64, *v)) + Text::new(format!("{v:.2}"), (0, -3), TextStyle::from(("sans-serif", 14).into_font()).pos(anchor))
            }))
            .map_err(perr)?;
        draw_references(&mut chart, references, -0.5, n as f64 - 0.5)?;
        if let Some(legend) = legend {
            let entries: Vec<(String, Mark)> = references.iter().map(|r| (r.0.clone(), Mark::Dashed(REF_GREY.to_rgba()))).collect();
            side_legend(&legend, &entries, 60)?;
        }
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}

/// 2-D PCA of the rows of `x` ([N, D]).
pub fn pca2(x: &Tensor) -> Result<Vec<(f64, f64)>> {
    let x = x.to_dtype(DType::F64)?.to_device(&Device::Cpu)?;
    let xc = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let cov = (xc.t()?.matmul(&xc)? / (x.dim(0)?.max(2) - 1) as f64)?;
    let d = cov.dim(0)?;
    // Two leading eigenvectors by power iteration with deflation.
    let mut vecs: Vec<Tensor> = vec![];
    let mut a = cov.clone();
    for k in 0..2 {
        let mut v = Tensor::from_vec((0..d).map(|i| ((i * 7 + k * 3) % 11) as f64 + 1.0).collect::<Vec<_>>(), (d, 1), &Device::Cpu)?;
        let mut lambda = 0.0;
        for _ in 0..200 {
            let w = a.matmul(&v)?;
            let n = w.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
            if n == 0.0 {
                break;
            }
            v = (w / n)?;
            lambda = n;
        }
        a = (a - (v.matmul(&v.t()?)? * lambda)?)?;
        vecs.push(v);
    }
    let p = xc.matmul(&Tensor::cat(&vecs, 1)?)?;
    let p: Vec<Vec<f64>> = p.to_vec2()?;
    Ok(p.into_iter().map(|r| (r[0], r[1])).collect())
}

/// Scatter of a 2-D PCA of embeddings, coloured by class (the legend beside the plot).
pub fn pca_svg(title: &str, x: &Tensor, labels: &[usize], class_names: &[String]) -> Result<Svg> {
    fonts();
    let pts = pca2(x)?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (plot, legend) = root.split_horizontally(560);
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for (a, b) in &pts {
            x0 = x0.min(*a);
            x1 = x1.max(*a);
            y0 = y0.min(*b);
            y1 = y1.max(*b);
        }
        let (dx, dy) = ((x1 - x0).max(1e-9) * 0.05, (y1 - y0).max(1e-9) * 0.05);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d((x0 - dx)..(x1 + dx), (y0 - dy)..(y1 + dy))
            .map_err(perr)?;
        chart.configure_mesh().x_desc("PC 1").y_desc("PC 2").label_style(("sans-serif", 14)).draw().map_err(perr)?;
        let classes = labels.iter().copied().max().map(|m| m + 1).unwrap_or(0);
        let mut entries = vec![];
        for c in 0..classes {
            let col = color(c);
            let name = class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
            chart.draw_series(pts.iter().zip(labels).filter(|(_, l)| **l == c).map(|(p, _)| Circle::new(*p, 3, col.filled()))).map_err(perr)?;
            entries.push((name, Mark::Dot(col.to_rgba())));
        }
        side_legend(&legend, &entries, 50)?;
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}

/// A grid of images (rows × columns, scaled up `scale`×) as PNG.
pub fn image_grid(images: &[RgbImage], cols: usize, scale: u32) -> Result<Png> {
    if images.is_empty() {
        return Err(Error::Config("no images to show".into()));
    }
    let (w, h) = images[0].dimensions();
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols);
    let gap = 2;
    let mut grid = RgbImage::from_pixel(cols as u32 * (w + gap), rows as u32 * (h + gap), image::Rgb([255, 255, 255]));
    for (i, im) in images.iter().enumerate() {
        let (x, y) = ((i % cols) as u32 * (w + gap), (i / cols) as u32 * (h + gap));
        image::imageops::replace(&mut grid, im, x as i64, y as i64);
    }
    let big = image::imageops::resize(&grid, grid.width() * scale, grid.height() * scale, image::imageops::FilterType::Nearest);
    let mut buf = std::io::Cursor::new(Vec::new());
    big.write_to(&mut buf, image::ImageFormat::Png).map_err(|e| Error::msg(format!("png: {e}")))?;
    Ok(Png(buf.into_inner()))
}

/// Un-normalise a CHW tensor (one image of a batch) back to RGB bytes for display.
pub fn tensor_to_image(x: &Tensor, mean: [f32; 3], std: [f32; 3]) -> Result<RgbImage> {
    let x = x.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let (c, h, w) = x.dims3()?;
    if c != 3 {
        return Err(Error::Config(format!("expected 3 channels, got {c}")));
    }
    let v: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let mut img = RgbImage::new(w as u32, h as u32);
    for yy in 0..h {
        for xx in 0..w {
            let p: [u8; 3] = std::array::from_fn(|k| ((v[k * h * w + yy * w + xx] * std[k] + mean[k]) * 255.0).round().clamp(0.0, 255.0) as u8);
            img.put_pixel(xx as u32, yy as u32, image::Rgb(p));
        }
    }
    Ok(img)
}

/// Write the run's charts (loss, k-NN with its references: [`knn_chart`]) as SVG into `dir`.
pub fn write_run_plots(dir: &std::path::Path, h: &History, random_init: Option<f64>, classes: Option<usize>) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = vec![];
    let smooth = (h.len() / 50).max(1);
    let p = dir.join("loss.svg");
    loss_chart(h, smooth)?.save(&p)?;
    out.push(p);
    if h.rows.iter().any(|r| r.knn_top1.is_some()) {
        let p = dir.join("knn.svg");
        knn_chart(h, random_init, classes)?.save(&p)?;
        out.push(p);
    }
    Ok(out)
}

/// A reference value drawn beside a transfer result (e.g. a number reported elsewhere),
/// labelled in the legend with `source`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub target: String,
    pub top1: f64,
    pub source: String,
}

/// Transfer accuracies: per target, the best and the last test top-1 as bars (percent, 0–100:
/// the targets differ in difficulty, so the bars start at zero), each labelled with its value;
/// `references` add a grey bar per target where given.
pub fn transfer_chart(title: &str, rows: &[crate::eval::TransferRow], references: &[Reference]) -> Result<Svg> {
    fonts();
    let mut out = String::new();
    {
        let n = rows.len().max(1);
        let width = (160 * n as u32).clamp(480, 1200);
        let root = SVGBackend::with_string(&mut out, (width + 200, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (main, legend) = root.split_horizontally(width);
        let (upper, lower) = main.split_vertically(410);
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            // A numeric x axis, target i centred on x = i (a segmented axis of one segment has
            // no width, and gave a single target's bars a negative one).
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..110.0)
            .map_err(perr)?;
        let labels: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .y_desc("test top-1 (%)")
            .y_labels(11)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 { labels.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        let has_ref = rows.iter().any(|r| references.iter().any(|x| x.target == r.target));
        let kinds = if has_ref { 3 } else { 2 };
        // The bars of a target share 0.8 of its unit, side by side.
        let bar_w = 0.8 / kinds as f64;
        let grey = RGBColor(150, 150, 150);
        let mut legend_drawn = [false; 3];
        let mut entries = vec![];
        let anchor = plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Center, plotters::style::text_anchor::VPos::Bottom);
        for (i, r) in rows.iter().enumerate() {
            let reference = references.iter().find(|x| x.target == r.target);
            let mut bars: Vec<(usize, f64, RGBColor, String)> = vec![(0, r.best_top1, color(0), "best top-1".into()), (1, r.last_top1, color(1), "last top-1".into())];
            if let Some(x) = reference {
                bars.push((2, x.top1, grey, x.source.clone()));
            }
            for (k, v, c, name) in bars {
                let (left, v) = (i as f64 - 0.4 + k as f64 * bar_w, v.clamp(0.0, 110.0));
                chart.draw_series(std::iter::once(Rectangle::new([(left, 0.0), (left + bar_w, v)], c.filled()))).map_err(perr)?;
                if !legend_drawn[k] {
                    legend_drawn[k] = true;
                    entries.push((name, Mark::Block(c.to_rgba())));
                }
                // The value above the bar, centred on it.
                let style = TextStyle::from(("sans-serif", 14).into_font()).pos(anchor);
                chart
                    .draw_series(std::iter::once(EmptyElement::at((left + bar_w / 2.0, v)) + Text::new(format!("{v:.1}"), (0, -2), style)))
                    .map_err(perr)?;
            }
        }
        side_legend(&legend, &entries, 60)?;
        lower
            .draw(&Text::new(
                "best = max test top-1 over the probe epochs (the original's number); last = final epoch",
                (10, 8),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(perr)?;
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}

/// One arm of [`curves_svg`]: a name and one curve per seed, `[(x, y)]` each.
#[derive(Debug, Clone)]
pub struct Arm {
    pub name: String,
    pub curves: Vec<Vec<(f64, f64)>>,
}

/// Curves of several arms over several seeds on one chart: each seed a thin line, the mean over
/// the seeds (at the x values every seed has) a thick one, and horizontal reference lines
/// (`(label, y)`: chance, the randomly initialised network, …) dashed in grey. The legend sits
/// to the right of the plot, never over the data; x ticks are whole numbers (epochs).
pub fn curves_svg(title: &str, x_label: &str, y_label: &str, arms: &[Arm], references: &[(String, f64)]) -> Result<Svg> {
    fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (plot, legend) = root.split_horizontally(680);
        let pts = arms.iter().flat_map(|a| a.curves.iter().flatten()).copied().chain(references.iter().map(|r| (f64::NAN, r.1)));
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for (x, y) in pts {
            if x.is_finite() {
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
            if y.is_finite() {
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(0.5);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{:.0}", x))
            .y_label_formatter(&|y| format!("{:.0}", y))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        draw_references(&mut chart, references, x0, x1)?;
        for (i, arm) in arms.iter().enumerate() {
            let c = color(i);
            for curve in &arm.curves {
                chart.draw_series(LineSeries::new(curve.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()), c.mix(0.35).stroke_width(1))).map_err(perr)?;
            }
            let mean = mean_curve(&arm.curves);
            chart.draw_series(LineSeries::new(mean, c.stroke_width(3))).map_err(perr)?;
        }
        // The legend, beside the plot.
        let mut entries = vec![];
        for (i, arm) in arms.iter().enumerate() {
            entries.push((format!("{} (mean)", arm.name), Mark::Line(color(i).to_rgba(), 3)));
            entries.push((format!("one seed ({})", arm.curves.len()), Mark::Line(color(i).mix(0.35), 1)));
        }
        if !references.is_empty() {
            entries.push(("reference".into(), Mark::Dashed(REF_GREY.to_rgba())));
        }
        side_legend(&legend, &entries, 60)?;
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}

/// The mean over curves at the x values all of them have (in the first curve's order).
pub fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let Some(first) = curves.first() else { return vec![] };
    first
        .iter()
        .filter_map(|&(x, _)| {
            let ys: Option<Vec<f64>> = curves.iter().map(|c| c.iter().find(|p| p.0 == x).map(|p| p.1)).collect();
            ys.filter(|v| v.iter().all(|y| y.is_finite())).map(|v| (x, v.iter().sum::<f64>() / v.len() as f64))
        })
        .collect()
}

/// The overfitting study at one d ([`crate::train::study`]): k-NN top-1 over the epochs of
/// Barlow Twins and Mixed Barlow Twins, each seed a thin line and their mean a thick one, with
/// chance (`100 / classes`) and the randomly initialised networks' mean as references.
pub fn study_chart(results: &[crate::train::study::RunResult], d: usize, classes: usize, data: &str) -> Result<Svg> {
    let at_d: Vec<crate::train::study::RunResult> = results.iter().filter(|r| r.run.d == d).cloned().collect();
    study_curves(&at_d, |m, _| crate::method::method_title(m).into(), classes, &format!("k-NN top-1 over pre-training, d = {d}, {data}"))
}

/// A study of several methods ([`crate::train::study`], `mixbt study methods`): k-NN top-1
/// over the epochs, one arm per method (its d in the name), seeds thin and their mean thick,
/// with chance and the random networks' mean as references.
pub fn methods_chart(results: &[crate::train::study::RunResult], classes: usize, data: &str) -> Result<Svg> {
    fn short(m: &str) -> &str {
        match m {
            "mixbt" => "Mixed BT",
            "bt" => "BT",
            m => crate::method::method_title(m),
        }
    }
    study_curves(results, |m, d| format!("{}, d = {d}", short(m)), classes, &format!("k-NN top-1 over pre-training, by method, {data}"))
}

/// The curves of `results`' arms; runs that stopped before their last epoch are left out (the
/// verdict names them).
fn study_curves(results: &[crate::train::study::RunResult], name: impl Fn(&str, usize) -> String, classes: usize, title: &str) -> Result<Svg> {
    let results: Vec<crate::train::study::RunResult> = results.iter().filter(|r| r.stopped.is_none()).cloned().collect();
    let results = results.as_slice();
    let mut arms_of: Vec<(String, usize)> = vec![];
    for r in results {
        if !arms_of.iter().any(|(m, d)| *m == r.run.method && *d == r.run.d) {
            arms_of.push((r.run.method.clone(), r.run.d));
        }
    }
    let arms: Vec<Arm> = arms_of
        .iter()
        .map(|(m, d)| Arm {
            name: name(m, *d),
            curves: results.iter().filter(|r| r.run.d == *d && &r.run.method == m).map(|r| r.knn.iter().map(|&(e, k, _)| (e as f64, k)).collect()).collect(),
        })
        .collect();
    let ri: Vec<f64> = results.iter().map(|r| r.knn_random_init).collect();
    let chance = 100.0 / classes.max(1) as f64;
    let mut refs = vec![(format!("chance ({chance:.0} %)"), chance)];
    if !ri.is_empty() {
        let m = ri.iter().sum::<f64>() / ri.len() as f64;
        refs.push((format!("random network ({m:.1} %)"), m));
    }
    curves_svg(title, "epoch", "k-NN top-1 (%)", &arms, &refs)
}
