//! The training history: one row per step, k-NN where evaluated; as a polars DataFrame, CSV
//! and parquet.

use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::io::{write_csv, write_parquet};
use crate::{Error, Result};

/// One optimisation step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 1-based global step.
    pub step: usize,
    /// 1-based epoch.
    pub epoch: usize,
    pub on_diag: f64,
    pub off_diag: f64,
    pub loss_bt: f64,
    pub reg_ma: f64,
    pub reg_mb: f64,
    pub loss_reg: f64,
    /// loss_bt + loss_reg
    pub loss: f64,
    pub lr: f64,
    /// Mixing coefficient α of this step (NaN without the mixed pass).
    pub alpha: f64,
    /// λ_reg in force (after the ramp / overrides).
    pub lambda_reg: f64,
    /// Images (pairs) per second of this step.
    pub images_per_s: f64,
    pub seconds: f64,
    pub knn_top1: Option<f64>,
    pub knn_top5: Option<f64>,
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

    /// The history as a DataFrame (columns step, epoch, loss_bt, loss_reg, loss, lr, alpha, …).
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let r = &self.rows;
        let f = |name: &str, v: Vec<f64>| Series::new(name.into(), v).into_column();
        let o = |name: &str, v: Vec<Option<f64>>| Series::new(name.into(), v).into_column();
        let cols = vec![
            Series::new("step".into(), r.iter().map(|x| x.step as i64).collect::<Vec<_>>()).into_column(),
            Series::new("epoch".into(), r.iter().map(|x| x.epoch as i64).collect::<Vec<_>>()).into_column(),
            f("loss_bt", r.iter().map(|x| x.loss_bt).collect()),
            f("loss_reg", r.iter().map(|x| x.loss_reg).collect()),
            f("loss", r.iter().map(|x| x.loss).collect()),
            f("lr", r.iter().map(|x| x.lr).collect()),
            f("alpha", r.iter().map(|x| x.alpha).collect()),
            f("lambda_reg", r.iter().map(|x| x.lambda_reg).collect()),
            f("on_diag", r.iter().map(|x| x.on_diag).collect()),
            f("off_diag", r.iter().map(|x| x.off_diag).collect()),
            f("reg_ma", r.iter().map(|x| x.reg_ma).collect()),
            f("reg_mb", r.iter().map(|x| x.reg_mb).collect()),
            f("images_per_s", r.iter().map(|x| x.images_per_s).collect()),
            o("knn_top1", r.iter().map(|x| x.knn_top1).collect()),
            o("knn_top5", r.iter().map(|x| x.knn_top5).collect()),
        ];
        DataFrame::new(r.len(), cols).map_err(|e| Error::msg(format!("history table: {e}")))
    }

    /// Write `history.csv` and `history.parquet` into `dir` (atomically each).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut df = self.to_dataframe()?;
        write_csv(&dir.join("history.csv"), &mut df)?;
        write_parquet(&dir.join("history.parquet"), &mut df)
    }
}

