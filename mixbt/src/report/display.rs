//! Rich output for the evcxr Jupyter kernel: a value with an `evcxr_display` method is shown
//! with the MIME type it prints (`EVCXR_BEGIN_CONTENT <mime>` … `EVCXR_END_CONTENT`).

use base64::Engine;
use polars::prelude::*;

fn emit(mime: &str, body: &str) {
    println!("EVCXR_BEGIN_CONTENT {mime}\n{body}\nEVCXR_END_CONTENT");
}

/// An SVG image.
#[derive(Debug, Clone)]
pub struct Svg(pub String);

impl Svg {
    pub fn evcxr_display(&self) {
        emit("image/svg+xml", &self.0)
    }
    /// Write to a file (atomically).
    pub fn save(&self, path: &std::path::Path) -> crate::Result<()> {
        crate::io::atomic_write(path, self.0.as_bytes())
    }

    /// The chart with a caption under it (what to look at), wrapped to the chart's width.
    pub fn caption(self, text: &str) -> Svg {
        let attr = |name: &str| -> Option<f64> {
            let head = &self.0[..self.0.find('>')?];
            let i = head.find(&format!(" {name}=\""))? + name.len() + 3;
            head[i..].split('"').next()?.parse().ok()
        };
        let (Some(w), Some(h)) = (attr("width"), attr("height")) else { return self };
        let per_line = ((w - 20.0) / 6.6).max(20.0) as usize;
        let mut lines: Vec<String> = vec![];
        for word in text.split_whitespace() {
            match lines.last_mut() {
                Some(l) if l.chars().count() + 1 + word.chars().count() <= per_line => {
                    l.push(' ');
                    l.push_str(word);
                }
                _ => lines.push(word.to_string()),
            }
        }
        let total = h + 8.0 + 17.0 * lines.len() as f64;
        let mut out = format!(
            "<svg width=\"{w}\" height=\"{total}\" viewBox=\"0 0 {w} {total}\" xmlns=\"http://www.w3.org/2000/svg\">\n<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{total}\" fill=\"#FFFFFF\"/>\n"
        );
        // The chart itself, nested (its own viewBox keeps its coordinates).
        out.push_str(self.0.trim_start_matches(|c| c != '<').replacen("<svg ", "<svg x=\"0\" y=\"0\" ", 1).as_str());
        for (k, l) in lines.iter().enumerate() {
            out.push_str(&format!(
                "\n<text x=\"10\" y=\"{}\" font-family=\"sans-serif\" font-size=\"12\" fill=\"#333333\">{}</text>",
                h + 18.0 + 17.0 * k as f64,
                esc(l)
            ));
        }
        out.push_str("\n</svg>\n");
        Svg(out)
    }
}

/// A PNG image.
#[derive(Debug, Clone)]
pub struct Png(pub Vec<u8>);

impl Png {
    pub fn evcxr_display(&self) {
        emit("image/png", &base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
    pub fn save(&self, path: &std::path::Path) -> crate::Result<()> {
        crate::io::atomic_write(path, &self.0)
    }
}

/// An HTML fragment.
#[derive(Debug, Clone)]
pub struct Html(pub String);

impl Html {
    pub fn evcxr_display(&self) {
        emit("text/html", &self.0)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A polars DataFrame shown as an HTML table (the first `max_rows` rows). Floats are written
/// for a reader, column by column ([`Table::format_column`]): whole numbers without decimals,
/// learning rates and other columns of tiny values in scientific notation, the rest with two
/// decimals (one from 100 up, three below 1); [`Table::decimals`] sets a column's decimals.
#[derive(Debug, Clone)]
pub struct Table {
    pub df: DataFrame,
    pub max_rows: usize,
    /// Decimals per column name, overriding the automatic choice.
    pub decimals: Vec<(String, usize)>,
}

/// How a column of floats is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FloatFormat {
    /// Whole numbers: no decimals.
    Whole,
    /// Fixed decimals.
    Fixed(usize),
    /// Scientific notation with this many decimals (`3.00e-3`).
    Scientific(usize),
}

impl FloatFormat {
    pub fn write(&self, x: f64) -> String {
        if !x.is_finite() {
            return if x.is_nan() { String::new() } else { x.to_string() };
        }
        match *self {
            FloatFormat::Whole => format!("{x:.0}"),
            FloatFormat::Fixed(d) => format!("{x:.d$}"),
            FloatFormat::Scientific(d) => format!("{x:.d$e}"),
        }
    }
}

impl Table {
    pub fn new(df: DataFrame) -> Self {
        Self { df, max_rows: 40, decimals: vec![] }
    }

    /// Write column `name` with `n` decimals.
    pub fn decimals(mut self, name: &str, n: usize) -> Self {
        self.decimals.push((name.to_string(), n));
        self
    }

    /// The format of a float column from its name and values: learning rates (a name that is
    /// or ends in `lr`) and columns whose largest value is below 0.01 in scientific notation,
    /// columns of whole numbers without decimals, else 1 decimal from 100 up, 3 below 1 and 2
    /// between.
    pub fn format_column(name: &str, values: &[f64]) -> FloatFormat {
        let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let max = finite.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let lr = name == "lr" || name.ends_with("_lr") || name.ends_with(".lr");
        if lr || (max > 0.0 && max < 0.01) {
            FloatFormat::Scientific(2)
        } else if !finite.is_empty() && finite.iter().all(|x| x.fract() == 0.0) {
            FloatFormat::Whole
        } else if max >= 100.0 {
            FloatFormat::Fixed(1)
        } else if max < 1.0 {
            FloatFormat::Fixed(3)
        } else {
            FloatFormat::Fixed(2)
        }
    }

    /// The HTML.
    pub fn to_html(&self) -> String {
        let df = &self.df;
        let mut s = String::from("<table class=\"mixbt\"><thead><tr>");
        for c in df.columns() {
            s.push_str(&format!("<th>{}</th>", esc(c.name())));
        }
        s.push_str("</tr></thead><tbody>");
        let formats: Vec<FloatFormat> = df
            .columns()
            .iter()
            .map(|c| {
                let name = c.name().as_str();
                if let Some((_, d)) = self.decimals.iter().rev().find(|(n, _)| n == name) {
                    return FloatFormat::Fixed(*d);
                }
                let v: Vec<f64> = match c.dtype() {
                    DataType::Float64 | DataType::Float32 => {
                        c.cast(&DataType::Float64).ok().and_then(|c| c.f64().ok().map(|a| a.iter().flatten().collect())).unwrap_or_default()
                    }
                    _ => vec![],
                };
                Table::format_column(name, &v)
            })
            .collect();
        let n = df.height();
        let rows: Vec<usize> = if n <= self.max_rows {
            (0..n).collect()
        } else {
            (0..self.max_rows / 2).chain(n - self.max_rows / 2..n).collect()
        };
        let mut prev = None;
        for i in rows {
            if let Some(p) = prev {
                if i != p + 1 {
                    s.push_str(&format!("<tr><td colspan=\"{}\">…</td></tr>", df.width()));
                }
            }
            prev = Some(i);
            s.push_str("<tr>");
            for (c, f) in df.columns().iter().zip(&formats) {
                let v = c.get(i).map(|v| match v {
                    AnyValue::Float64(x) => f.write(x),
                    AnyValue::Float32(x) => f.write(x as f64),
                    AnyValue::Null => String::new(),
                    AnyValue::String(x) => x.to_string(),
                    other => other.to_string(),
                });
                s.push_str(&format!("<td>{}</td>", esc(&v.unwrap_or_default())));
            }
            s.push_str("</tr>");
        }
        s.push_str(&format!("</tbody></table><p><small>{} rows × {} columns</small></p>", n, df.width()));
        s
    }

    pub fn evcxr_display(&self) {
        emit("text/html", &self.to_html())
    }
}
