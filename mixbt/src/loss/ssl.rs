//! The losses of the baselines the paper compares with (reference §7, `ssl-sota`): SimCLR's
//! NT-Xent, the normalised MSE of BYOL and W-MSE, and W-MSE's batch whitening — plain functions
//! on `[N, D]` tensors of any float type and device, differentiable.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, D};

use crate::model::l2_normalize as normalize_rows;
use crate::{Error, Result};

fn check_pair(a: &Tensor, b: &Tensor, what: &str) -> Result<(usize, usize)> {
    let (n, d) = a.dims2().map_err(|_| Error::Config(format!("{what}: expected [N, D] embeddings, got {:?}", a.dims())))?;
    if b.dims() != a.dims() {
        return Err(Error::Config(format!("{what}: the two embeddings differ in shape: {:?} and {:?}", a.dims(), b.dims())));
    }
    Ok((n, d))
}

/// SimCLR's loss exactly as `ssl-sota`'s `contrastive_loss(x0, x1, tau, norm=True)`: rows
/// L2-normalised; for each sample of view A the logits against all of view B (its own row the
/// positive) and against the other samples of view A (itself masked with −10⁹), cross-entropy,
/// and the same from view B; the two directions averaged. A scalar.
pub fn nt_xent(z_a: &Tensor, z_b: &Tensor, tau: f64) -> Result<Tensor> {
    let (ab, ba) = nt_xent_directions(z_a, z_b, tau)?;
    Ok(((ab + ba)? / 2.0)?)
}

/// The two cross-entropies [`nt_xent`] averages: view A's rows against `[B | A]`, and view B's
/// rows against `[A | B]` (SimCLR's loss components).
pub fn nt_xent_directions(z_a: &Tensor, z_b: &Tensor, tau: f64) -> Result<(Tensor, Tensor)> {
    let (n, _) = check_pair(z_a, z_b, "nt_xent")?;
    if !(tau > 0.0 && tau.is_finite()) {
        return Err(Error::field("tau", format!("must be positive and finite, got {tau}")));
    }
    let (a, b) = (normalize_rows(z_a)?, normalize_rows(z_b)?);
    let mask = (Tensor::eye(n, a.dtype(), a.device())? * 1e9)?;
    let l00 = ((a.matmul(&a.t()?)? / tau)? - &mask)?;
    let l11 = ((b.matmul(&b.t()?)? / tau)? - &mask)?;
    let l01 = (a.matmul(&b.t()?)? / tau)?;
    let l10 = (b.matmul(&a.t()?)? / tau)?;
    let target = Tensor::arange(0u32, n as u32, a.device())?;
    let ce = |logits: Tensor| -> Result<Tensor> { Ok(candle_nn::loss::cross_entropy(&logits, &target)?) };
    Ok((ce(Tensor::cat(&[&l01, &l00], 1)?)?, ce(Tensor::cat(&[&l10, &l11], 1)?)?))
}

/// `2 − 2·cos(p, z)` averaged over the batch (`ssl-sota`'s `norm_mse_loss`; BYOL and W-MSE).
/// A scalar.
pub fn norm_mse(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    check_pair(p, z, "norm_mse")?;
    let cos = (normalize_rows(p)? * normalize_rows(z)?)?.sum(D::Minus1)?.mean_all()?;
    Ok(cos.affine(-2.0, 2.0)?)
}

/// `Whitening2d(track_running_stats=False, eps)` of `ssl-sota` on an `[N, D]` batch: centre the
/// columns, covariance with N − 1, shrink `(1 − eps)·Σ + eps·I`, Cholesky `Σ = L·Lᵀ`, and return
/// `(x − mean)·L⁻ᵀ`, whose covariance is the identity (for eps 0). Differentiable.
///
/// candle has neither a Cholesky factorisation nor a triangular solve. The D × D matrix (D is 64
/// to 256 in the recipes) goes to the host in f64 for `L⁻¹` and comes back: a few million flops,
/// negligible next to the network, and the same code on every device; the rest stays on the
/// tensor's device.
pub fn whiten(x: &Tensor, eps: f64) -> Result<Tensor> {
    let (n, d) = x.dims2().map_err(|_| Error::Config(format!("whiten: expected an [N, D] batch, got {:?}", x.dims())))?;
    if n < 2 {
        return Err(Error::Config(format!("whiten: a batch of {n} has no covariance (N − 1 = 0)")));
    }
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::field("eps", format!("must lie in [0, 1], got {eps}")));
    }
    let xn = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let cov = (xn.t()?.matmul(&xn)? / (n - 1) as f64)?;
    let eye = Tensor::eye(d, x.dtype(), x.device())?;
    let shrunk = ((cov * (1.0 - eps))? + (eye * eps)?)?;
    let host = shrunk.to_dtype(DType::F64)?.to_device(&Device::Cpu)?;
    // A covariance that is not positive definite is a degenerate batch (dimensions collapsed
    // onto each other), like a Barlow Twins column of zero variance: the run stops as such.
    let w = host.apply_op1(InvChol).map_err(|e| match e.to_string() {
        m if m.contains("not positive definite") => Error::ZeroVariance(m.lines().next().unwrap_or_default().to_string()),
        _ => Error::from(e),
    })?;
    let w = w.to_dtype(x.dtype())?.to_device(x.device())?;
    Ok(xn.matmul(&w.t()?)?)
}

/// `W = L⁻¹` of the Cholesky factor `L` of a symmetric positive-definite matrix (f64, CPU),
/// with the gradient of a function of `W` back to the matrix.
struct InvChol;

/// Cholesky factor (row-major, lower); `Err` names the pivot that is not positive.
fn cholesky(a: &[f64], d: usize) -> std::result::Result<Vec<f64>, String> {
    let mut l = vec![0.0; d * d];
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= l[j * d + k] * l[j * d + k];
        }
        if !(s > 0.0 && s.is_finite()) {
            return Err(format!("whiten: the covariance is not positive definite (pivot {j} is {s:e}); use eps > 0 or a batch larger than the dimension"));
        }
        let ljj = s.sqrt();
        l[j * d + j] = ljj;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            l[i * d + j] = s / ljj;
        }
    }
    Ok(l)
}

/// Inverse of a lower-triangular matrix (lower-triangular), by forward substitution.
fn tril_inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut w = vec![0.0; d * d];
    for c in 0..d {
        for i in c..d {
            let mut s = if i == c { 1.0 } else { 0.0 };
            for k in c..i {
                s -= l[i * d + k] * w[k * d + c];
            }
            w[i * d + c] = s / l[i * d + i];
        }
    }
    w
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik != 0.0 {
                for j in 0..d {
                    c[i * d + j] += aik * b[k * d + j];
                }
            }
        }
    }
    c
}

fn transpose(a: &[f64], d: usize) -> Vec<f64> {
    let mut t = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            t[j * d + i] = a[i * d + j];
        }
    }
    t
}

fn square_f64<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<(&'a [f64], usize)> {
    let (d0, d1) = l.shape().dims2()?;
    if d0 != d1 {
        candle_core::bail!("inverse Cholesky: a square matrix is needed, got {:?}", l.dims())
    }
    let Some((start, end)) = l.contiguous_offsets() else { candle_core::bail!("inverse Cholesky: the matrix must be contiguous") };
    match s {
        CpuStorage::F64(v) => Ok((&v[start..end], d0)),
        _ => candle_core::bail!("inverse Cholesky: f64 input expected"),
    }
}

impl CustomOp1 for InvChol {
    fn name(&self) -> &'static str {
        "mixbt-inverse-cholesky"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, d) = square_f64(s, l)?;
        let chol = cholesky(a, d).map_err(candle_core::Error::msg)?;
        Ok((CpuStorage::F64(tril_inverse(&chol, d)), l.shape().clone()))
    }

    /// With `W = L⁻¹` and `Σ = L·Lᵀ`: `L̄ = tril(−Wᵀ·tril(W̄)·Wᵀ)`, then the Cholesky backward
    /// (Murray 2016) `S = Wᵀ·Φ(Lᵀ·L̄)·W` with Φ the lower triangle with its diagonal halved,
    /// symmetrised: `Σ̄ = (S + Sᵀ)/2`.
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let d = res.dim(0)?;
        let w: Vec<f64> = res.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let mut g: Vec<f64> = grad.to_dtype(DType::F64)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        for i in 0..d {
            for j in i + 1..d {
                g[i * d + j] = 0.0; // W is lower-triangular: its upper part is not a variable
            }
        }
        let wt = transpose(&w, d);
        let mut lbar = matmul(&matmul(&wt, &g, d), &wt, d);
        for i in 0..d {
            for j in 0..d {
                lbar[i * d + j] = if j <= i { -lbar[i * d + j] } else { 0.0 };
            }
        }
        let l = tril_inverse(&w, d); // L = W⁻¹
        let mut phi = matmul(&transpose(&l, d), &lbar, d);
        for i in 0..d {
            for j in 0..d {
                if j > i {
                    phi[i * d + j] = 0.0;
                } else if j == i {
                    phi[i * d + j] *= 0.5;
                }
            }
        }
        let s = matmul(&matmul(&wt, &phi, d), &w, d);
        let sym: Vec<f64> = (0..d * d).map(|k| 0.5 * (s[k] + s[(k % d) * d + k / d])).collect();
        Ok(Some(Tensor::from_vec(sym, (d, d), &Device::Cpu)?))
    }
}
