//! Train-mode batch normalisation (optionally fused with the following ReLU) and a fused
//! `relu(a + b)`, as CPU custom ops with hand-written backward passes. Statistics are
//! accumulated in f64.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Per-channel batch statistics of the last forward: mean and biased variance.
#[derive(Debug, Clone, Default)]
pub struct BnStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    invstd: Vec<f32>,
    /// Elements per channel the statistics are over (N·H·W, summed over ranks when synchronised).
    pub count: f64,
}

/// `y = [relu]((x − mean)/sqrt(var + eps)·w + b)` with batch statistics, over dim 1 of `[N, C, …]`.
pub struct BnTrainOp {
    pub eps: f64,
    pub relu: bool,
    pub stats: Arc<Mutex<BnStats>>,
    /// Synchronised batch norm (PyTorch's `SyncBatchNorm`): statistics over the global batch of
    /// every rank of the group, and the input gradient from the sums of every rank.
    pub sync: Option<crate::dist::Group>,
}

/// Sum `v` over the ranks of `sync` (nothing without one).
fn reduce(sync: &Option<crate::dist::Group>, v: &mut [f64]) -> Result<()> {
    match sync {
        Some(g) => g.all_reduce_f64(v).map_err(candle_core::Error::wrap),
        None => Ok(()),
    }
}


/// Read a contiguous CPU f32 tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        candle_core::Storage::Cpu(c) => Ok(f(super::f32_slice(c, l, "tensor")?)),
        _ => candle_core::bail!("CPU tensor expected"),
    }
}

fn dims(l: &Layout) -> (usize, usize, usize) {
    let d = l.dims();
    let (n, c) = (d[0], d[1]);
    (n, c, d[2..].iter().product::<usize>().max(1))
}

/// Row reductions with 8 f32 lanes (vectorised), returned as f64.
mod rows {
    crate::ops::simd_fn! {
    pub fn sum(a: &[f32]) -> f64 {
        let mut acc = [0f32; 8];
        let it = a.chunks_exact(8);
        let rem = it.remainder();
        for ch in it {
            for l in 0..8 {
                acc[l] += ch[l];
            }
        }
        acc.iter().map(|v| *v as f64).sum::<f64>() + rem.iter().map(|v| *v as f64).sum::<f64>()
    }
    }

    crate::ops::simd_fn! {
    pub fn sq_dev(a: &[f32], m: f32) -> f64 {
        let mut acc = [0f32; 8];
        let it = a.chunks_exact(8);
        let rem = it.remainder();
        for ch in it {
            for l in 0..8 {
                let d = ch[l] - m;
                acc[l] += d * d;
            }
        }
        acc.iter().map(|v| *v as f64).sum::<f64>() + rem.iter().map(|v| ((v - m) * (v - m)) as f64).sum::<f64>()
    }
    }

    /// Whether the ReLU after `y = x·scale + shift` passes the gradient (`y > 0`; a NaN `y`
    /// was output as 0 by `max`, so it does not).
    #[inline(always)]
    pub fn keep(x: f32, relu: Option<(f32, f32)>) -> bool {
        match relu {
            Some((s, t)) => x * s + t > 0.0,
            None => true,
        }
    }

    /// (Σ g, Σ g·(x − m)) with g = dy, masked where y = x·scale + shift ≤ 0 when `relu` (the
    /// output is recomputed rather than read: one memory stream less).
    #[inline]
    pub fn bwd(x: &[f32], dy: &[f32], m: f32, relu: Option<(f32, f32)>) -> (f64, f64) {
        let mut n8 = 0;
        let (mut sa, mut sb) = (0f64, 0f64);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2/FMA.
            (sa, sb) = unsafe { bwd_avx2(x, dy, m, relu) };
            n8 = x.len() / 8 * 8;
        }
        for i in n8..x.len() {
            let g = if keep(x[i], relu) { dy[i] } else { 0.0 };
            sa += g as f64;
            sb += (g * (x[i] - m)) as f64;
        }
        (sa, sb)
    }

    /// The 8-lane part of [`bwd`] (the first `len / 8 · 8` elements), accumulators in registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn bwd_avx2(x: &[f32], dy: &[f32], m: f32, relu: Option<(f32, f32)>) -> (f64, f64) {
        use std::arch::x86_64::*;
        let (s, t) = relu.unwrap_or((0.0, 1.0));
        let all = if relu.is_some() { 0 } else { -1 };
        let keep_all = _mm256_castsi256_ps(_mm256_set1_epi32(all));
        let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (vs, vt, vm, z) = (_mm256_set1_ps(s), _mm256_set1_ps(t), _mm256_set1_ps(m), _mm256_setzero_ps());
        for i in (0..x.len() / 8 * 8).step_by(8) {
            let xv = _mm256_loadu_ps(x.as_ptr().add(i));
            let dv = _mm256_loadu_ps(dy.as_ptr().add(i));
            // y = x·s + t computed as in the forward (multiply, then add: no FMA rounding).
            let y = _mm256_add_ps(_mm256_mul_ps(xv, vs), vt);
            let g = _mm256_and_ps(dv, _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(y, z), keep_all));
            a = _mm256_add_ps(a, g);
            b = _mm256_add_ps(b, _mm256_mul_ps(g, _mm256_sub_ps(xv, vm)));
        }
        let (mut la, mut lb) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(la.as_mut_ptr(), a);
        _mm256_storeu_ps(lb.as_mut_ptr(), b);
        (la.iter().map(|v| *v as f64).sum(), lb.iter().map(|v| *v as f64).sum())
    }
}

/// PyTorch's ReLU: negatives become 0, NaN stays NaN (`f32::max(v, 0.0)` would turn NaN into 0
/// and hide a diverged network behind constant outputs). Compiles to one `vmaxps(0, v)`.
#[inline(always)]
fn relu0(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

/// `[relu](x·scale[ch] + shift[ch])` for `x` of `[N, C, hw]`, images in parallel.
fn affine(x: &[f32], c: usize, hw: usize, scale: &[f32], shift: &[f32], relu: bool) -> Vec<f32> {
    super::par_new(x.len(), c * hw, true, |i, yr| affine_image(yr, &x[i * c * hw..][..yr.len()], hw, scale, shift, relu))
}

super::simd_fn! {
    /// [`affine`] of one image.
    fn affine_image(yr: &mut [f32], xr: &[f32], hw: usize, scale: &[f32], shift: &[f32], relu: bool) {
        for (ch, (yo, xo)) in yr.chunks_exact_mut(hw).zip(xr.chunks_exact(hw)).enumerate() {
            let (s, t) = (scale[ch], shift[ch]);
            if relu {
                for (o, i) in yo.iter_mut().zip(xo) {
                    *o = relu0(i * s + t);
                }
            } else {
                for (o, i) in yo.iter_mut().zip(xo) {
                    *o = i * s + t;
                }
            }
        }
    }
}

/// `y = [relu](x·scale + shift)` per channel (dim 1 of `[N, C, …]`): eval-mode batch norm
/// folded into one pass, with its backward (gradients for x, scale and shift).
pub struct ChannelAffineOp {
    pub relu: bool,
}

impl CustomOp3 for ChannelAffineOp {
    fn name(&self) -> &'static str {
        "mixbt-channel-affine"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ss: &CpuStorage, sl: &Layout, ts: &CpuStorage, tl: &Layout) -> Result<(CpuStorage, Shape)> {
        let _p = super::profile::scope("affine.forward");
        let x = super::f32_slice(xs, xl, "affine input")?;
        let scale = super::f32_slice(ss, sl, "affine scale")?;
        let shift = super::f32_slice(ts, tl, "affine shift")?;
        let (_, c, hw) = dims(xl);
        if scale.len() != c || shift.len() != c {
            candle_core::bail!("channel affine: {c} channels but {} scales and {} shifts", scale.len(), shift.len())
        }
        Ok((CpuStorage::F32(affine(x, c, hw, scale, shift, self.relu)), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, scale: &Tensor, _shift: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _p = super::profile::scope("affine.backward");
        let d = x.dims().to_vec();
        let (n, c) = (d[0], d[1]);
        let hw: usize = d[2..].iter().product::<usize>().max(1);
        let relu = self.relu;
        let (dx, ds, dt) = with_f32(x, |xv| {
            with_f32(scale, |sv| {
                with_f32(y, |yv| {
                    with_f32(dy, |dyv| {
                        let g = |i: usize| if relu && yv[i] <= 0.0 { 0.0 } else { dyv[i] };
                        let sums = per_channel(n, c, hw, |_, r| {
                            let (mut a, mut b) = (0f64, 0f64);
                            for i in r {
                                a += g(i) as f64;
                                b += (g(i) * xv[i]) as f64;
                            }
                            Pair(a, b)
                        });
                        let dx = super::par_new(xv.len(), c * hw, true, |img, dr| {
                            let (yi, di) = (&yv[img * c * hw..][..c * hw], &dyv[img * c * hw..][..c * hw]);
                            affine_dx(dr, yi, di, hw, sv, relu)
                        });
                        let ds: Vec<f32> = sums.iter().map(|p| p.1 as f32).collect();
                        let dt: Vec<f32> = sums.iter().map(|p| p.0 as f32).collect();
                        (dx, ds, dt)
                    })
                })
            })
        })????;
        let dev = x.device();
        Ok((Some(Tensor::from_vec(dx, d, dev)?), Some(Tensor::from_vec(ds, c, dev)?), Some(Tensor::from_vec(dt, c, dev)?)))
    }
}

/// `[relu](x·scale + shift)` per channel: fused on the CPU for f32, candle ops elsewhere.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor, relu: bool) -> Result<Tensor> {
    if super::fast_bn_applies(x) && scale.dtype() == candle_core::DType::F32 && shift.dtype() == candle_core::DType::F32 {
        return x.contiguous()?.apply_op3(&scale.contiguous()?, &shift.contiguous()?, ChannelAffineOp { relu });
    }
    let mut shape = vec![1; x.rank()];
    shape[1] = x.dim(1)?;
    let y = x.broadcast_mul(&scale.reshape(shape.as_slice())?)?.broadcast_add(&shift.reshape(shape.as_slice())?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

super::simd_fn! {
    /// The input gradient of [`ChannelAffineOp`] for one image: `dy·scale`, zero where the ReLU
    /// output `y` is not positive.
    fn affine_dx(dr: &mut [f32], y: &[f32], dy: &[f32], hw: usize, scale: &[f32], relu: bool) {
        for (ch, ((o, yc), dc)) in dr.chunks_exact_mut(hw).zip(y.chunks_exact(hw)).zip(dy.chunks_exact(hw)).enumerate() {
            let s = scale[ch];
            for ((o, yy), d) in o.iter_mut().zip(yc).zip(dc) {
                *o = if relu && *yy <= 0.0 { 0.0 } else { *d * s };
            }
        }
    }
}

/// For each channel, Σ over its `n` rows of `f(channel, row slice range)`; channels in parallel.
fn per_channel<T: Send + Default + std::ops::AddAssign>(n: usize, c: usize, hw: usize, f: impl Fn(usize, std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut acc = T::default();
            for i in 0..n {
                let base = (i * c + ch) * hw;
                acc += f(ch, base..base + hw);
            }
            acc
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Pair(f64, f64);
impl std::ops::AddAssign for Pair {
    fn add_assign(&mut self, o: Self) {
        self.0 += o.0;
        self.1 += o.1;
    }
}

impl CustomOp3 for BnTrainOp {
    fn name(&self) -> &'static str {
        "mixbt-batch-norm"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout, bs: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        let _p = super::profile::scope("bn.forward");
        let x = super::f32_slice(xs, xl, "bn input")?;
        let w = super::f32_slice(ws, wl, "bn weight")?;
        let b = super::f32_slice(bs, bl, "bn bias")?;
        let (n, c, hw) = dims(xl);
        let mut sums = per_channel(n, c, hw, |_, r| rows::sum(&x[r]));
        sums.push((n * hw) as f64);
        reduce(&self.sync, &mut sums)?;
        let m = sums.pop().unwrap_or(0.0);
        let mean: Vec<f32> = sums.iter().map(|s| (s / m) as f32).collect();
        let mut sq = per_channel(n, c, hw, |ch, r| rows::sq_dev(&x[r], mean[ch]));
        reduce(&self.sync, &mut sq)?;
        let var: Vec<f32> = sq.iter().map(|s| (s / m) as f32).collect();
        let invstd: Vec<f32> = var.iter().map(|v| (1.0 / (*v as f64 + self.eps).sqrt()) as f32).collect();
        let scale: Vec<f32> = (0..c).map(|i| invstd[i] * w[i]).collect();
        let shift: Vec<f32> = (0..c).map(|i| b[i] - mean[i] * scale[i]).collect();
        let y = affine(x, c, hw, &scale, &shift, self.relu);
        *self.stats.lock().unwrap() = BnStats { mean, var, invstd, count: m };
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, b: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _p = super::profile::scope("bn.backward");
        let st = self.stats.lock().unwrap().clone();
        let d = x.dims().to_vec();
        let (n, c) = (d[0], d[1]);
        let hw: usize = d[2..].iter().product::<usize>().max(1);
        let m = st.count as f32;
        let relu = self.relu;
        let sync = &self.sync;
        let (dx, dw, db) = with_f32(x, |xv| {
            with_f32(w, |wv| {
                with_f32(b, |bv| {
                    with_f32(dy, |dyv| {
                        // The forward's affine map, to recompute the ReLU mask from x.
                        let scale: Vec<f32> = (0..c).map(|i| st.invstd[i] * wv[i]).collect();
                        let shift: Vec<f32> = (0..c).map(|i| bv[i] - st.mean[i] * scale[i]).collect();
                        let mask = |ch: usize| relu.then(|| (scale[ch], shift[ch]));
                        let _pr = super::profile::scope("bn.backward.reduce");
                        let sums = per_channel(n, c, hw, |ch, r| {
                            let (a, b) = rows::bwd(&xv[r.clone()], &dyv[r], st.mean[ch], mask(ch));
                            Pair(a, b)
                        });
                        let db: Vec<f32> = sums.iter().map(|p| p.0 as f32).collect();
                        let dw: Vec<f32> = sums.iter().enumerate().map(|(ch, p)| (p.1 * st.invstd[ch] as f64) as f32).collect();
                        drop(_pr);
                        // Synchronised: the input gradient needs the sums over every rank, and so
                        // do the weight and bias gradients, which are then the whole (in f64:
                        // near-cancelling f32 shares added later would lose their few digits).
                        let (gdb, gdw) = match sync {
                            None => (None, None),
                            Some(_) => {
                                let mut all: Vec<f64> = sums.iter().flat_map(|p| [p.0, p.1]).collect();
                                reduce(sync, &mut all)?;
                                let gdb: Vec<f32> = all.chunks_exact(2).map(|p| p[0] as f32).collect();
                                let gdw: Vec<f32> = all.chunks_exact(2).enumerate().map(|(ch, p)| (p[1] * st.invstd[ch] as f64) as f32).collect();
                                (Some(gdb), Some(gdw))
                            }
                        };
                        let _pd = super::profile::scope("bn.backward.dx");
                        let k: Vec<f32> = (0..c).map(|ch| wv[ch] * st.invstd[ch] / m).collect();
                        let (sdb, sdw) = (gdb.as_deref().unwrap_or(&db), gdw.as_deref().unwrap_or(&dw));
                        let coef = BnDx { k: &k, mean: &st.mean, invstd: &st.invstd, db: sdb, dw: sdw, scale: &scale, shift: &shift, relu, m };
                        let dx = super::par_new(xv.len(), c * hw, true, |i, dr| {
                            bn_dx(dr, &xv[i * c * hw..][..c * hw], &dyv[i * c * hw..][..c * hw], hw, &coef);
                        });
                        let (dw, db) = match (gdw, gdb) {
                            (Some(w), Some(b)) => (w, b),
                            _ => (dw, db),
                        };
                        Ok::<_, candle_core::Error>((dx, dw, db))
                    })
                })
            })
        })?????;
        if self.sync.is_some() {
            crate::dist::mark_reduced(w);
            crate::dist::mark_reduced(b);
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, d, dev)?),
            Some(Tensor::from_vec(dw, c, dev)?),
            Some(Tensor::from_vec(db, c, dev)?),
        ))
    }
}

/// Per-channel coefficients of the batch-norm input gradient.
struct BnDx<'a> {
    /// `weight · invstd / m`.
    k: &'a [f32],
    mean: &'a [f32],
    invstd: &'a [f32],
    /// Σ g and Σ g·x̂ over the channel.
    db: &'a [f32],
    dw: &'a [f32],
    /// The forward's affine map, to recompute the ReLU mask from x.
    scale: &'a [f32],
    shift: &'a [f32],
    relu: bool,
    /// Elements per channel (N·H·W).
    m: f32,
}

super::simd_fn! {
    /// The batch-norm input gradient of one image:
    /// `dx = k·(m·g − Σg − x̂·Σg·x̂)` with `g = dy` masked by the ReLU.
    fn bn_dx(dr: &mut [f32], x: &[f32], dy: &[f32], hw: usize, q: &BnDx) {
        for (ch, ((o, xc), dc)) in dr.chunks_exact_mut(hw).zip(x.chunks_exact(hw)).zip(dy.chunks_exact(hw)).enumerate() {
            let (k, mu, is, sdb, sdw, m) = (q.k[ch], q.mean[ch], q.invstd[ch], q.db[ch], q.dw[ch], q.m);
            let (s, t) = (q.scale[ch], q.shift[ch]);
            if q.relu {
                for ((o, x), d) in o.iter_mut().zip(xc).zip(dc) {
                    // y = x·s + t as in the forward (multiply, then add).
                    let g = if x * s + t > 0.0 { *d } else { 0.0 };
                    *o = k * (m * g - sdb - (x - mu) * is * sdw);
                }
            } else {
                for ((o, x), d) in o.iter_mut().zip(xc).zip(dc) {
                    *o = k * (m * d - sdb - (x - mu) * is * sdw);
                }
            }
        }
    }
}

/// Fused train-mode batch norm (+ ReLU): returns `(y, batch mean, biased batch variance)`.
pub fn batch_norm_train(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, relu: bool) -> Result<(Tensor, Tensor, Tensor)> {
    let (y, mean, var, _) = batch_norm_train_sync(x, w, b, eps, relu, None)?;
    Ok((y, mean, var))
}

/// [`batch_norm_train`] with the statistics over every rank of `sync` (none: this process's
/// batch); also returns the elements per channel the statistics are over.
pub fn batch_norm_train_sync(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, relu: bool, sync: Option<crate::dist::Group>) -> Result<(Tensor, Tensor, Tensor, f64)> {
    let stats = Arc::new(Mutex::new(BnStats::default()));
    let op = BnTrainOp { eps, relu, stats: stats.clone(), sync };
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?;
    let s = stats.lock().unwrap();
    let c = s.mean.len();
    let dev = x.device();
    Ok((y, Tensor::from_vec(s.mean.clone(), c, dev)?, Tensor::from_vec(s.var.clone(), c, dev)?, s.count))
}

super::simd_fn! {
    fn add_relu_fwd(y: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, x), z) in y.iter_mut().zip(a).zip(b) {
            *o = relu0(x + z);
        }
    }
}

super::simd_fn! {
    /// `dy` where the ReLU output `y` is positive, else 0.
    fn relu_bwd(g: &mut [f32], y: &[f32], dy: &[f32]) {
        for ((o, yy), d) in g.iter_mut().zip(y).zip(dy) {
            *o = if *yy > 0.0 { *d } else { 0.0 };
        }
    }
}

/// `relu(a + b)` fused.
pub struct AddReluOp;

impl CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "mixbt-add-relu"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let _p = super::profile::scope("add-relu.forward");
        let a = super::f32_slice(s1, l1, "add-relu lhs")?;
        let b = super::f32_slice(s2, l2, "add-relu rhs")?;
        if l1.shape() != l2.shape() {
            candle_core::bail!("add-relu: shapes {:?} and {:?}", l1.dims(), l2.dims())
        }
        const CH: usize = 1 << 14;
        let y = super::par_new(a.len(), CH, true, |i, yc| add_relu_fwd(yc, &a[i * CH..][..yc.len()], &b[i * CH..][..yc.len()]));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, _a: &Tensor, _b: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let _p = super::profile::scope("add-relu.backward");
        let g = with_f32(y, |yv| {
            with_f32(dy, |dv| {
                const CH: usize = 1 << 14;
                super::par_new(yv.len(), CH, true, |i, gc| relu_bwd(gc, &yv[i * CH..][..gc.len()], &dv[i * CH..][..gc.len()]))
            })
        })??;
        let g = Tensor::from_vec(g, y.dims(), y.device())?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `relu(a + b)`: fused on the CPU for f32, candle ops elsewhere.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().is_cpu() && a.dtype() == candle_core::DType::F32 && b.dtype() == candle_core::DType::F32 && a.dims() == b.dims() {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)
    } else {
        (a + b)?.relu()
    }
}
