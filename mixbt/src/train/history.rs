//! The training history: one row per step, k-NN where evaluated; as a polars DataFrame, CSV
//! and parquet.

use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::io::{write_csv, write_parquet};
use crate::{Error, Result};

/// The named values a method reports for a step (its loss components, whose names start with
/// `loss_`, and diagnostics such as `alpha`, `lambda_reg`, `tau`), in the method's order.
/// Serialised as a JSON object (NaN as `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(pub Vec<(String, f64)>);

impl Metrics {
    pub fn push(&mut self, name: &str, v: f64) {
        self.0.push((name.to_string(), v));
    }
    /// The value called `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
    /// The loss components (names starting with `loss_`).
    pub fn components(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().filter(|(n, _)| n.starts_with("loss_")).map(|(n, v)| (n.as_str(), *v))
    }
    /// ` (loss_bt 1.234, loss_reg 0.0456)`, or nothing without components (progress lines).
    pub fn components_text(&self) -> String {
        let parts: Vec<String> = self.components().map(|(n, v)| format!("{} {v:.4}", n.trim_start_matches("loss_"))).collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, &if v.is_finite() { Some(*v) } else { None })?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Metrics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of metric names to numbers or null")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> std::result::Result<Metrics, A::Error> {
                let mut m = Metrics::default();
                while let Some((k, v)) = a.next_entry::<String, Option<f64>>()? {
                    m.0.push((k, v.unwrap_or(f64::NAN)));
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

/// One optimisation step: what every method has, and the method's own [`Metrics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 1-based global step.
    pub step: usize,
    /// 1-based epoch.
    pub epoch: usize,
    /// The loss the optimiser minimised (Mixed Barlow Twins: loss_bt + loss_reg).
    pub loss: f64,
    pub lr: f64,
    /// Images (each with all its views) per second of this step.
    pub images_per_s: f64,
    pub seconds: f64,
    pub knn_top1: Option<f64>,
    pub knn_top5: Option<f64>,
    /// The method's named values (checkpoints written before methods were plug-ins had Barlow
    /// Twins' as fields of their own: they land here).
    #[serde(flatten)]
    pub metrics: Metrics,
}

impl StepStats {
    /// The method's value `name` (NaN when it reports none: e.g. `alpha` of SimCLR).
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics.get(name).unwrap_or(f64::NAN)
    }
}

/// All steps so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub rows: Vec<StepStats>,
}

impl History {
    pub fn push(&mut self, s: StepStats) {
        self.rows.push(s);
    }
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn last(&self) -> Option<&StepStats> {
        self.rows.last()
    }
    /// Attach a k-NN result to the last row.
    pub fn set_knn(&mut self, top1: f64, top5: f64) {
        if let Some(r) = self.rows.last_mut() {
            r.knn_top1 = Some(top1);
            r.knn_top5 = Some(top5);
        }
    }

    /// The names of the method's values, in the order of first appearance.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = vec![];
        for r in &self.rows {
            for n in r.metrics.names() {
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
        }
        names
    }

    /// The history as a DataFrame: `step`, `epoch`, `loss`, `lr`, then the method's values
    /// (Mixed Barlow Twins: `loss_bt`, `loss_reg`, `on_diag`, `off_diag`, `reg_ma`, `reg_mb`,
    /// `alpha`, `lambda_reg`; BYOL: `loss_ab`, `loss_ba`, `tau`; …), `images_per_s`,
    /// `knn_top1`, `knn_top5`.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let r = &self.rows;
        let f = |name: &str, v: Vec<f64>| Series::new(name.into(), v).into_column();
        let o = |name: &str, v: Vec<Option<f64>>| Series::new(name.into(), v).into_column();
        let mut cols = vec![
            Series::new("step".into(), r.iter().map(|x| x.step as i64).collect::<Vec<_>>()).into_column(),
            Series::new("epoch".into(), r.iter().map(|x| x.epoch as i64).collect::<Vec<_>>()).into_column(),
            f("loss", r.iter().map(|x| x.loss).collect()),
            f("lr", r.iter().map(|x| x.lr).collect()),
        ];
        for name in self.metric_names() {
            cols.push(f(&name, r.iter().map(|x| x.metric(&name)).collect()));
        }
        cols.push(f("images_per_s", r.iter().map(|x| x.images_per_s).collect()));
        cols.push(o("knn_top1", r.iter().map(|x| x.knn_top1).collect()));
        cols.push(o("knn_top5", r.iter().map(|x| x.knn_top5).collect()));
        DataFrame::new(r.len(), cols).map_err(|e| Error::msg(format!("history table: {e}")))
    }

    /// Write `history.csv` and `history.parquet` into `dir` (atomically each).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut df = self.to_dataframe()?;
        write_csv(&dir.join("history.csv"), &mut df)?;
        write_parquet(&dir.join("history.parquet"), &mut df)
    }
}

