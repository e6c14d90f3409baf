//! Per-channel pixel statistics of a data set (what `Normalize` needs for your own data).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Dataset;
use crate::Result;

/// Images, classes and per-channel mean/std of pixel/255 over every pixel of every image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataStats {
    pub images: usize,
    pub classes: usize,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Images skipped as corrupt.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub skipped: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// Compute [`DataStats`] in parallel (exact sums in u64, so the result is independent of the
/// thread count).
pub fn compute(ds: &dyn Dataset) -> Result<DataStats> {
    let sums = (0..ds.len())
        .into_par_iter()
        .map(|i| -> Result<([u64; 3], [u64; 3], u64)> {
            let im = match ds.image(i) {
                Ok(im) => im,
                Err(e) if ds.skip_corrupt() => {
                    ds.note_skipped(i, &e);
                    return Ok(([0; 3], [0; 3], 0));
                }
                Err(e) => return Err(e),
            };
            let mut s = [0u64; 3];
            let mut q = [0u64; 3];
            for p in im.pixels() {
                for c in 0..3 {
                    let v = p[c] as u64;
                    s[c] += v;
                    q[c] += v * v;
                }
            }
            Ok((s, q, (im.width() * im.height()) as u64))
        })
        .try_reduce(
            || ([0; 3], [0; 3], 0),
            |a, b| Ok(([a.0[0] + b.0[0], a.0[1] + b.0[1], a.0[2] + b.0[2]], [a.1[0] + b.1[0], a.1[1] + b.1[1], a.1[2] + b.1[2]], a.2 + b.2)),
        )?;
    let n = sums.2.max(1) as f64;
    let mut mean = [0.0; 3];
    let mut std = [0.0; 3];
    for c in 0..3 {
        let m = sums.0[c] as f64 / n / 255.0;
        let var = sums.1[c] as f64 / n / (255.0 * 255.0) - m * m;
        mean[c] = m;
        std[c] = var.max(0.0).sqrt();
    }
    Ok(DataStats { images: ds.len() - ds.skipped(), classes: ds.classes().len(), mean, std, skipped: ds.skipped() })
}
