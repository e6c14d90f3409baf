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

/// Named line series `(name, [(x, y)])` on one chart.
pub fn lines_svg(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)], log_y: bool) -> Result<Svg> {
    fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (720, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let pts = series.iter().flat_map(|(_, p)| p.iter()).filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0));
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for (x, y) in pts {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, if log_y { 0.1 } else { 0.0 }, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + y0.abs().max(1e-3);
        }
        let pad = if log_y { 0.0 } else { (y1 - y0) * 0.05 };
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 20)).margin(10).x_label_area_size(40).y_label_area_size(60);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart.configure_mesh().x_desc(x_label).y_desc(y_label).label_style(("sans-serif", 12)).draw().map_err(perr)?;
                for (i, (name, p)) in series.iter().enumerate() {
                    let c = color(i);
                    let data: Vec<(f64, f64)> = p.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0)).collect();
                    if data.len() == 1 {
                        chart.draw_series(data.iter().map(|&(x, y)| Circle::new((x, y), 4, c.filled()))).map_err(perr)?
                            .label(name.as_str())
                            .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
                    } else {
                        chart.draw_series(LineSeries::new(data, c.stroke_width(2))).map_err(perr)?
                            .label(name.as_str())
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                    }
                }
                chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 12)).draw().map_err(perr)?;
            }};
        }
        if log_y {
            draw!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(perr)?);
        } else {
            draw!(b.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(perr)?);
        }
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

/// k-NN top-1/top-5 accuracy over the epochs where it was evaluated.
pub fn knn_chart(h: &History, random_init: Option<f64>) -> Result<Svg> {
    let t1: Vec<(f64, f64)> = h.rows.iter().filter_map(|r| r.knn_top1.map(|v| (r.step as f64, v))).collect();
    let t5: Vec<(f64, f64)> = h.rows.iter().filter_map(|r| r.knn_top5.map(|v| (r.step as f64, v))).collect();
    let mut series = vec![("k-NN top-1".to_string(), t1), ("k-NN top-5".to_string(), t5)];
    if let Some(ri) = random_init {
        let last = h.rows.last().map(|r| r.step as f64).unwrap_or(1.0);
        series.push(("top-1 at random init".into(), vec![(0.0, ri), (last, ri)]));
    }
    Ok(lines_svg("k-NN accuracy (k=200, T=0.5)", "step", "accuracy %", &series, false)?
        .caption("Weighted k-NN of the backbone's features (bank: the train split, evaluated on the test split) at the steps where it ran; the flat line is the same network before training."))
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
            .label_style(("sans-serif", 10))
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
        bar.configure_mesh().disable_mesh().disable_x_axis().y_labels(5).label_style(("sans-serif", 10)).draw().map_err(perr)?;
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

/// Values per category, one dot per seed (jittered sideways) and the mean as a bar-less marker
/// joined by a line, with the mean's value printed; an optional horizontal reference line
/// `(label, value)` (e.g. the Barlow Twins baseline). The y range fits the data, so differences
/// of a point are visible. Categories are evenly spaced (λ values are not on a linear scale).
pub fn spread_svg(title: &str, x_label: &str, y_label: &str, categories: &[String], values: &[Vec<f64>], reference: Option<(&str, f64)>) -> Result<Svg> {
    fonts();
    let n = categories.len().max(1);
    let all: Vec<f64> = values.iter().flatten().copied().chain(reference.map(|r| r.1)).filter(|v| v.is_finite()).collect();
    let (mut y0, mut y1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.15).max(0.5);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (720, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 17))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
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
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(perr)?;
        if let Some((label, v)) = reference {
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(vec![(-0.5, v), (n as f64 - 0.5, v)], 6, 4, grey.stroke_width(2)))
                .map_err(perr)?
                .label(format!("{label}: {v:.2}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2)));
        }
        let seeds = values.iter().map(|v| v.len()).max().unwrap_or(0);
        let mut first = true;
        for (i, ys) in values.iter().enumerate() {
            let c = color(0);
            let dots = ys.iter().enumerate().map(|(k, &y)| {
                let dx = if seeds > 1 { (k as f64 - (seeds - 1) as f64 / 2.0) * 0.06 } else { 0.0 };
                Circle::new((i as f64 + dx, y), 4, c.mix(0.55).filled())
            });
            let s = chart.draw_series(dots).map_err(perr)?;
            if first && seeds > 1 {
                s.label("one seed").legend(move |(x, y)| Circle::new((x + 10, y), 4, c.mix(0.55).filled()));
            }
            first = false;
        }
        let means: Vec<(f64, f64)> = values.iter().enumerate().filter(|(_, ys)| !ys.is_empty()).map(|(i, ys)| (i as f64, ys.iter().sum::<f64>() / ys.len() as f64)).collect();
        let c1 = color(1);
        chart
            .draw_series(LineSeries::new(means.clone(), c1.stroke_width(2)).point_size(5))
            .map_err(perr)?
            .label(if seeds > 1 { "mean over seeds" } else { "value" })
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c1.stroke_width(2)));
        chart
            .draw_series(means.iter().map(|&(x, y)| {
                let style = TextStyle::from(("sans-serif", 11).into_font()).pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Left, plotters::style::text_anchor::VPos::Bottom));
                EmptyElement::at((x, y)) + Text::new(format!("{y:.2}"), (8, -6), style)
            }))
            .map_err(perr)?;
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 12)).draw().map_err(perr)?;
        root.present().map_err(perr)?;
    }
    Ok(Svg(out))
}

/// Bars `(label, value)` (λ ablations).
pub fn bars_svg(title: &str, y_label: &str, bars: &[(String, f64)]) -> Result<Svg> {
    fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (720, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let ymax = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9) * 1.15;
        let n = bars.len().max(1);
        // A numeric x axis, bar i centred on x = i (a segmented axis of one segment has no
        // width, and gave a single bar a negative one).
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
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
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(perr)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| Rectangle::new([(i as f64 - 0.35, 0.0), (i as f64 + 0.35, *v)], color(i).filled())))
            .map_err(perr)?;
        // Each value centred just above its bar.
        let anchor = plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Center, plotters::style::text_anchor::VPos::Bottom);
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                EmptyElement::at((i as f64, *v)) + Text::new(format!("{v:.2}"), (0, -3), TextStyle::from(("sans-serif", 12).into_font()).pos(anchor))
            }))
            .map_err(perr)?;
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

/// Scatter of a 2-D PCA of embeddings, coloured by class.
pub fn pca_svg(title: &str, x: &Tensor, labels: &[usize], class_names: &[String]) -> Result<Svg> {
    fonts();
    let pts = pca2(x)?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (560, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for (a, b) in &pts {
            x0 = x0.min(*a);
            x1 = x1.max(*a);
            y0 = y0.min(*b);
            y1 = y1.max(*b);
        }
        let (dx, dy) = ((x1 - x0).max(1e-9) * 0.05, (y1 - y0).max(1e-9) * 0.05);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d((x0 - dx)..(x1 + dx), (y0 - dy)..(y1 + dy))
            .map_err(perr)?;
        chart.configure_mesh().x_desc("PC 1").y_desc("PC 2").label_style(("sans-serif", 10)).draw().map_err(perr)?;
        let classes = labels.iter().copied().max().map(|m| m + 1).unwrap_or(0);
        for c in 0..classes {
            let col = color(c);
            let name = class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
            chart
                .draw_series(pts.iter().zip(labels).filter(|(_, l)| **l == c).map(|(p, _)| Circle::new(*p, 3, col.filled())))
                .map_err(perr)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 10)).draw().map_err(perr)?;
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

/// Write the run's charts (loss, k-NN) as SVG into `dir`.
pub fn write_run_plots(dir: &std::path::Path, h: &History, random_init: Option<f64>) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = vec![];
    let smooth = (h.len() / 50).max(1);
    let p = dir.join("loss.svg");
    loss_chart(h, smooth)?.save(&p)?;
    out.push(p);
    if h.rows.iter().any(|r| r.knn_top1.is_some()) {
        let p = dir.join("knn.svg");
        knn_chart(h, random_init)?.save(&p)?;
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
        let root = SVGBackend::with_string(&mut out, (width, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let (upper, lower) = root.split_vertically(410);
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            // A segmented 0..k has k + 1 segments.
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..110.0)
            .map_err(perr)?;
        let labels: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("test top-1 (%)")
            .y_labels(11)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(perr)?;
        let seg_px = chart.plotting_area().dim_in_pixel().0 as f64 / n as f64;
        let has_ref = rows.iter().any(|r| references.iter().any(|x| x.target == r.target));
        let kinds = if has_ref { 3 } else { 2 };
        let bar_px = (seg_px * 0.8 / kinds as f64).max(2.0);
        let grey = RGBColor(150, 150, 150);
        let mut legend_drawn = [false; 3];
        for (i, r) in rows.iter().enumerate() {
            let reference = references.iter().find(|x| x.target == r.target);
            let mut bars: Vec<(usize, f64, RGBColor, String)> = vec![(0, r.best_top1, color(0), "best top-1".into()), (1, r.last_top1, color(1), "last top-1".into())];
            if let Some(x) = reference {
                bars.push((2, x.top1, grey, x.source.clone()));
            }
            for (k, v, c, name) in bars {
                let left = seg_px * 0.1 + k as f64 * bar_px;
                let right = seg_px - left - bar_px;
                let mut rect = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), v.clamp(0.0, 110.0))], c.filled());
                rect.set_margin(0, 0, left.round() as u32, right.max(0.0).round() as u32);
                let series = chart.draw_series(std::iter::once(rect)).map_err(perr)?;
                if !legend_drawn[k] {
                    legend_drawn[k] = true;
                    series.label(name).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
                }
                // The value above the bar, centred on it.
                let centre = seg_px * 0.1 + (k as f64 + 0.5) * bar_px - seg_px / 2.0;
                let style = TextStyle::from(("sans-serif", 11).into_font()).pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Center, plotters::style::text_anchor::VPos::Bottom));
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at((SegmentValue::CenterOf(i), v.clamp(0.0, 110.0))) + Text::new(format!("{v:.1}"), (centre.round() as i32, -2), style),
                    ))
                    .map_err(perr)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(perr)?;
        lower
            .draw(&Text::new(
                "best = max test top-1 over the probe epochs (the original's number); last = final epoch",
                (10, 8),
                ("sans-serif", 12).into_font(),
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
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        let grey = RGBColor(110, 110, 110);
        for (label, y) in references {
            // Dashed: short segments along the line.
            let n = 60;
            let step = (x1 - x0) / n as f64;
            chart
                .draw_series((0..n).step_by(2).map(|i| PathElement::new(vec![(x0 + i as f64 * step, *y), (x0 + (i + 1) as f64 * step, *y)], grey.stroke_width(1))))
                .map_err(perr)?;
            // Labelled at the right end: the curves start at the left, on the random network.
            let style = TextStyle::from(("sans-serif", 12).into_font()).color(&grey).pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Right, plotters::style::text_anchor::VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(label.clone(), (x1 - (x1 - x0) * 0.01, *y), style))).map_err(perr)?;
        }
        for (i, arm) in arms.iter().enumerate() {
            let c = color(i);
            for curve in &arm.curves {
                chart.draw_series(LineSeries::new(curve.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()), c.mix(0.35).stroke_width(1))).map_err(perr)?;
            }
            let mean = mean_curve(&arm.curves);
            chart.draw_series(LineSeries::new(mean, c.stroke_width(3))).map_err(perr)?;
        }
        // The legend, beside the plot.
        let font = ("sans-serif", 14).into_font();
        let mut y = 60;
        for (i, arm) in arms.iter().enumerate() {
            let c = color(i);
            legend.draw(&PathElement::new(vec![(10, y), (40, y)], c.stroke_width(3))).map_err(perr)?;
            legend.draw(&Text::new(format!("{} (mean)", arm.name), (48, y - 8), font.clone())).map_err(perr)?;
            y += 24;
            legend.draw(&PathElement::new(vec![(10, y), (40, y)], c.mix(0.35).stroke_width(1))).map_err(perr)?;
            legend.draw(&Text::new(format!("one seed ({})", arm.curves.len()), (48, y - 8), font.clone())).map_err(perr)?;
            y += 32;
        }
        if !references.is_empty() {
            legend.draw(&PathElement::new(vec![(10, y), (18, y)], grey.stroke_width(1))).map_err(perr)?;
            legend.draw(&PathElement::new(vec![(24, y), (32, y)], grey.stroke_width(1))).map_err(perr)?;
            legend.draw(&Text::new("reference", (48, y - 8), font.clone())).map_err(perr)?;
        }
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
    let arms: Vec<Arm> = crate::train::study::STUDY_METHODS
        .iter()
        .map(|m| Arm {
            name: if *m == "bt" { "Barlow Twins".into() } else { "Mixed Barlow Twins".into() },
            curves: results.iter().filter(|r| r.run.d == d && r.run.method == *m).map(|r| r.knn.iter().map(|&(e, k, _)| (e as f64, k)).collect()).collect(),
        })
        .filter(|a| !a.curves.is_empty())
        .collect();
    let ri: Vec<f64> = results.iter().filter(|r| r.run.d == d).map(|r| r.knn_random_init).collect();
    let mut refs = vec![(format!("chance ({:.0} %)", 100.0 / classes.max(1) as f64), 100.0 / classes.max(1) as f64)];
    if !ri.is_empty() {
        let m = ri.iter().sum::<f64>() / ri.len() as f64;
        refs.push((format!("random network ({m:.1} %)"), m));
    }
    curves_svg(&format!("k-NN top-1 over pre-training, d = {d}, {data}"), "epoch", "k-NN top-1 (%)", &arms, &refs)
}
