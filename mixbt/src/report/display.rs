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

/// A polars DataFrame shown as an HTML table (the first `max_rows` rows; floats to 4 decimals).
#[derive(Debug, Clone)]
pub struct Table {
    pub df: DataFrame,
    pub max_rows: usize,
}

impl Table {
    pub fn new(df: DataFrame) -> Self {
        Self { df, max_rows: 40 }
    }

    /// The HTML.
    pub fn to_html(&self) -> String {
        let df = &self.df;
        let mut s = String::from("<table class=\"mixbt\"><thead><tr>");
        for c in df.columns() {
            s.push_str(&format!("<th>{}</th>", esc(c.name())));
        }
        s.push_str("</tr></thead><tbody>");
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
            for c in df.columns() {
                let v = c.get(i).map(|v| match v {
                    AnyValue::Float64(x) => format!("{x:.4}"),
                    AnyValue::Float32(x) => format!("{x:.4}"),
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
