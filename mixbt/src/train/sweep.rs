//! Sweeps: pre-train a recipe for every (value, seed) of one recipe field and tabulate the k-NN
//! accuracy, so an ablation shows the spread over seeds next to the differences between values.

use std::time::Instant;

use polars::prelude::*;
use serde_json::Value;

use super::{PretrainOptions, Pretrainer, Recipe};
use crate::{Error, Result};

/// Set `param` of `recipe` to `value`. `param` is a dotted path into the recipe as serialised
/// (`method.loss.lambda_bt` — `loss.lambda_bt` also works for Barlow Twins, as before
/// methods were plug-ins —, `batch_size`, `method.tau`, `encoder.backbone.width`, `optimizer.lr`, …; an integer
/// field takes an integral value), or one of the named knobs: `lambda_reg` (also switches the
/// mixed pass on or off, [`Recipe::set_lambda_reg`]) and `d` (the projector's output width).
pub fn set_param(recipe: &mut Recipe, param: &str, value: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(Error::field(param, format!("sweep value {value} is not finite")));
    }
    match param {
        "lambda_reg" => return recipe.set_lambda_reg(value),
        "d" => {
            let sizes = &mut recipe.encoder.projector.sizes;
            if value < 1.0 || value.fract() != 0.0 || sizes.len() < 2 {
                return Err(Error::field("d", format!("needs a whole number ≥ 1 and a projector (got {value}, sizes {sizes:?})")));
            }
            *sizes.last_mut().unwrap() = value as usize;
            return Ok(());
        }
        _ => {}
    }
    let path = if param.starts_with("loss.") && recipe.barlow_twins().is_some() { format!("method.{param}") } else { param.to_string() };
    let mut json = serde_json::to_value(&*recipe)?;
    let mut slot = &mut json;
    for key in path.split('.') {
        slot = slot.get_mut(key).ok_or_else(|| Error::field(param, format!("is not a recipe field (no `{key}`)")))?;
    }
    *slot = match slot {
        Value::Number(n) if n.is_u64() || n.is_i64() => {
            if value.fract() != 0.0 || value < 0.0 {
                return Err(Error::field(param, format!("is a whole-number field, got {value}")));
            }
            Value::from(value as u64)
        }
        Value::Number(_) | Value::Null => Value::from(value),
        other => return Err(Error::field(param, format!("is not a number field ({other})"))),
    };
    *recipe = serde_json::from_value(json).map_err(|e| Error::field(param, format!("cannot take {value}: {e}")))?;
    Ok(())
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepRow {
    pub value: f64,
    pub seed: u64,
    pub knn_top1: f64,
    pub knn_top5: f64,
    /// k-NN top-1 of the same network before its first step (NaN when the options skip it).
    pub knn_random_init: f64,
    pub final_loss: f64,
    pub seconds: f64,
}

/// Pre-train `recipe` with `param` set to each of `values`, once per seed of `seeds` (fresh
/// network and data order per seed; in memory, no run folder), and return one row per
/// (value, seed): `param, value, seed, knn_top1, knn_top5, knn_random_init, gain, final_loss,
/// seconds` (`gain` = `knn_top1 − knn_random_init`: whether the run learned at all; the random
/// network's k-NN is skipped, and NaN, with `opts.skip_random_init_knn`).
/// `on_row` sees each row as it finishes (progress in a notebook).
pub fn sweep_with(recipe: &Recipe, param: &str, values: &[f64], seeds: &[u64], opts: &PretrainOptions, mut on_row: impl FnMut(&SweepRow)) -> Result<DataFrame> {
    if values.is_empty() || seeds.is_empty() {
        return Err(Error::Config("a sweep needs at least one value and one seed".into()));
    }
    let mut rows = vec![];
    for &v in values {
        let mut r = recipe.clone();
        set_param(&mut r, param, v)?;
        r.validate()?;
        for &seed in seeds {
            let t0 = Instant::now();
            let o = PretrainOptions { seed, out_dir: None, progress: false, ..opts.clone() };
            let mut t = Pretrainer::new(r.clone(), o)?;
            let s = t.fit()?;
            let row = SweepRow { value: v, seed, knn_top1: s.knn_top1, knn_top5: s.knn_top5, knn_random_init: s.knn_top1_random_init, final_loss: s.final_loss, seconds: t0.elapsed().as_secs_f64() };
            on_row(&row);
            rows.push(row);
        }
    }
    sweep_table(param, &rows)
}

/// [`sweep_with`] with default options (CPU, all cores) and no progress callback.
pub fn sweep(recipe: &Recipe, param: &str, values: &[f64], seeds: &[u64]) -> Result<DataFrame> {
    sweep_with(recipe, param, values, seeds, &PretrainOptions::default(), |_| {})
}

/// Sweep rows as a table (`param, value, seed, knn_top1, knn_top5, knn_random_init, gain, final_loss, seconds`).
pub fn sweep_table(param: &str, rows: &[SweepRow]) -> Result<DataFrame> {
    let f = |g: fn(&SweepRow) -> f64| rows.iter().map(g).collect::<Vec<f64>>();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("param".into(), vec![param.to_string(); rows.len()]),
            Column::new("value".into(), f(|r| r.value)),
            Column::new("seed".into(), rows.iter().map(|r| r.seed).collect::<Vec<u64>>()),
            Column::new("knn_top1".into(), f(|r| r.knn_top1)),
            Column::new("knn_top5".into(), f(|r| r.knn_top5)),
            Column::new("knn_random_init".into(), f(|r| r.knn_random_init)),
            Column::new("gain".into(), f(|r| r.knn_top1 - r.knn_random_init)),
            Column::new("final_loss".into(), f(|r| r.final_loss)),
            Column::new("seconds".into(), f(|r| r.seconds)),
        ],
    )
    .map_err(|e| Error::msg(format!("sweep table: {e}")))
}

/// Per value, in the order values first appear: the value and `metric` of each of its runs (in
/// seed order) — what a chart of the spread draws.
pub fn by_value(df: &DataFrame, metric: &str) -> Result<Vec<(f64, Vec<f64>)>> {
    let col = |n: &str| -> Result<Vec<f64>> {
        let c = df.column(n).map_err(|e| Error::msg(format!("sweep table: {e}")))?;
        let c = c.cast(&DataType::Float64).map_err(|e| Error::msg(format!("sweep table: {e}")))?;
        Ok(c.f64().map_err(|e| Error::msg(format!("sweep table: {e}")))?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let (values, seeds, m) = (col("value")?, col("seed")?, col(metric)?);
    let mut out: Vec<(f64, Vec<(f64, f64)>)> = vec![];
    for ((v, s), y) in values.into_iter().zip(seeds).zip(m) {
        match out.iter_mut().find(|(x, _)| *x == v) {
            Some((_, ys)) => ys.push((s, y)),
            None => out.push((v, vec![(s, y)])),
        }
    }
    Ok(out
        .into_iter()
        .map(|(v, mut ys)| {
            ys.sort_by(|a, b| a.0.total_cmp(&b.0));
            (v, ys.into_iter().map(|(_, y)| y).collect())
        })
        .collect())
}

/// Per value: (value, mean, min, max) of `metric` over the seeds, in the order values first appear.
pub fn spread(df: &DataFrame, metric: &str) -> Result<Vec<(f64, f64, f64, f64)>> {
    Ok(by_value(df, metric)?
        .into_iter()
        .map(|(v, ys)| {
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            (v, mean, ys.iter().cloned().fold(f64::INFINITY, f64::min), ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max))
        })
        .collect())
}

/// One sentence comparing each value with `baseline` seed by seed (the same seed gives the same
/// initialisation and data order, so most of the seed-to-seed noise cancels): the mean paired
/// difference of `metric` and its range, and whether every seed agrees on its sign.
pub fn paired_verdict(df: &DataFrame, metric: &str, baseline: f64) -> Result<String> {
    let groups = by_value(df, metric)?;
    let base = groups.iter().find(|g| g.0 == baseline).ok_or_else(|| Error::Config(format!("the sweep has no runs with value {baseline}")))?.1.clone();
    let mut parts = vec![];
    for (v, ys) in groups.iter().filter(|g| g.0 != baseline) {
        let d: Vec<f64> = ys.iter().zip(&base).map(|(y, b)| y - b).collect();
        if d.is_empty() {
            continue;
        }
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let (lo, hi) = (d.iter().cloned().fold(f64::INFINITY, f64::min), d.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
        let sign = if lo > 0.0 { ", better on every seed" } else if hi < 0.0 { ", worse on every seed" } else { ", the seeds disagree" };
        parts.push(format!("{v}: {mean:+.2} ({lo:+.2} … {hi:+.2}{sign})"));
    }
    Ok(format!("Paired by seed against {baseline} (same initialisation and data order): {}.", parts.join("; ")))
}

/// One sentence on whether the differences between the values' means exceed the spread over
/// seeds: the range of the means against the widest per-value range (max − min over seeds).
pub fn spread_verdict(df: &DataFrame, metric: &str) -> Result<String> {
    let s = spread(df, metric)?;
    let means: Vec<f64> = s.iter().map(|r| r.1).collect();
    let between = means.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - means.iter().cloned().fold(f64::INFINITY, f64::min);
    let within = s.iter().map(|r| r.3 - r.2).fold(0.0, f64::max);
    let seeds = df.height() / s.len().max(1);
    Ok(if seeds < 2 {
        format!("One seed per value: the spread over seeds is unknown, so differences of {between:.2} points cannot be judged.")
    } else if between > within {
        format!("The means differ by up to {between:.2} points, more than the widest spread over {seeds} seeds ({within:.2} points): the differences exceed the seed-to-seed noise.")
    } else {
        format!("The means differ by up to {between:.2} points, no more than the widest spread over {seeds} seeds ({within:.2} points): on this budget the differences are within the seed-to-seed noise.")
    })
}
