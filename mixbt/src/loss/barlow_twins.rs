//! Barlow Twins and Mixed Barlow Twins, exactly as `main.py` (small datasets) and
//! `main_imagenet.py` (ImageNet) compute them.

use candle_core::{DType, Device, Result as CResult, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use crate::model::l2_normalize;
use crate::{Error, Result};

/// Which original script's loss to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixVariant {
    /// `main.py`: `C^MB_gt = α·Z_Aᵀ Z_B/N + (1−α)·(P Z_B)ᵀ Z_B/N`, reg weight `λ_reg·λ_BT`.
    Small,
    /// `main_imagenet.py` as coded: `C^MB_gt = α·Z_Bᵀ Z_B/N + …` (its quirk, not the README formula)
    /// and reg weight `0.5·λ_BT·λ_reg`.
    ImageNet,
}

/// The Mixed Barlow Twins loss. `lambda_reg = 0` is plain Barlow Twins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixedBarlowTwins {
    /// Weight of the off-diagonal term (`--lmbda` / `--lambd`).
    pub lambda_bt: f64,
    /// Weight of the mixed-sample regulariser (`--mixup_loss_scale` / `--lambda_mixup` × ramp).
    pub lambda_reg: f64,
    pub variant: MixVariant,
    /// L2-normalise the projector outputs first (small datasets, as `model.py` does).
    pub l2_normalize: bool,
}

impl Default for MixedBarlowTwins {
    fn default() -> Self {
        Self { lambda_bt: 0.0078125, lambda_reg: 4.0, variant: MixVariant::Small, l2_normalize: true }
    }
}

/// Every component of the loss, as scalar tensors (all differentiable).
#[derive(Debug, Clone)]
pub struct LossParts {
    /// Σ_i (C_ii − 1)²
    pub on_diag: Tensor,
    /// Σ_{i≠j} C_ij²
    pub off_diag: Tensor,
    /// on_diag + λ_BT·off_diag
    pub loss_bt: Tensor,
    /// ‖C^MA − C^MA_gt‖² (plain sum of squares)
    pub reg_ma: Tensor,
    /// ‖C^MB − C^MB_gt‖²
    pub reg_mb: Tensor,
    /// The weighted regulariser added to `loss_bt`.
    pub loss_reg: Tensor,
    /// loss_bt + loss_reg
    pub total: Tensor,
}

/// The matrices behind the loss, for notebooks (C, C^MA and its target, C^MB and its target).
#[derive(Debug, Clone)]
pub struct CrossCorrelations {
    pub c: Tensor,
    pub c_ma: Option<Tensor>,
    pub c_ma_gt: Option<Tensor>,
    pub c_mb: Option<Tensor>,
    pub c_mb_gt: Option<Tensor>,
}

/// Column-wise standardisation `(z − mean) / std` with the unbiased std and no epsilon, as the original.
pub fn standardize(z: &Tensor) -> CResult<Tensor> {
    let n = z.dim(0)?;
    let mean = z.mean_keepdim(0)?;
    let zc = z.broadcast_sub(&mean)?;
    let std = (zc.sqr()?.sum_keepdim(0)? / (n as f64 - 1.0))?.sqrt()?;
    zc.broadcast_div(&std)
}

/// [`standardize`] within each of `blocks` consecutive blocks of rows (`main_imagenet.py` on
/// several GPUs: each standardises its own rows before the cross-correlations are summed over
/// GPUs). One block is [`standardize`].
pub fn standardize_blocks(z: &Tensor, blocks: usize) -> CResult<Tensor> {
    if blocks <= 1 {
        return standardize(z);
    }
    let (n, d) = z.dims2()?;
    if n % blocks != 0 || n / blocks < 2 {
        candle_core::bail!("cannot standardise {n} rows in {blocks} blocks of at least 2");
    }
    let m = n / blocks;
    let zb = z.reshape((blocks, m, d))?;
    let zc = zb.broadcast_sub(&zb.mean_keepdim(1)?)?;
    let std = (zc.sqr()?.sum_keepdim(1)? / (m as f64 - 1.0))?.sqrt()?;
    zc.broadcast_div(&std)?.reshape((n, d))
}

/// `aᵀ b / n`.
pub fn cross_correlation(a: &Tensor, b: &Tensor, n: usize) -> CResult<Tensor> {
    a.t()?.matmul(b)? / n as f64
}

/// `off_diagonal(c).pow(2).sum()`: the sum of squares of all entries off the diagonal.
pub fn off_diagonal_sq_sum(c: &Tensor) -> CResult<Tensor> {
    let d = c.dim(0)?;
    let eye = Tensor::eye(d, c.dtype(), c.device())?;
    let mask = (1.0 - eye)?;
    (c * mask)?.sqr()?.sum_all()
}

fn on_diagonal_sq(c: &Tensor) -> CResult<Tensor> {
    let d = c.dim(0)?;
    let eye = Tensor::eye(d, c.dtype(), c.device())?;
    ((c * eye)?.sum(1)? - 1.0)?.sqr()?.sum_all()
}

/// The smallest d at which [`MixedBarlowTwins::compute`] takes the Gram form (with d > N).
/// Below it the d×d matrices are small (96 of them at d = 1024: 0.4 GB), and the loss keeps the
/// arithmetic it always had, so runs and checkpoints made before the Gram form continue to the
/// same bits.
pub const GRAM_MIN_D: usize = 2048;

/// Whether [`MixedBarlowTwins::compute`] takes the Gram form for a batch of `n` embeddings of
/// size `d`: when d > N, where N×N Gram matrices are smaller than d×d ones and cost fewer FLOPs,
/// and d ≥ [`GRAM_MIN_D`].
pub fn gram_form(n: usize, d: usize) -> bool {
    d > n && d >= GRAM_MIN_D
}

/// `Z Zᵀ` (`[N, N]`).
fn gram(z: &Tensor) -> CResult<Tensor> {
    z.matmul(&z.t()?)
}

/// `⟨G, H⟩ = Σ G_ij H_ij`, summed in f64 and returned in `g`'s dtype.
fn gram_inner(g: &Tensor, h: &Tensor) -> CResult<Tensor> {
    let dt = g.dtype();
    (g.to_dtype(DType::F64)? * h.to_dtype(DType::F64)?)?.sum_all()?.to_dtype(dt)
}

/// Barlow Twins' two terms from the views and their Gram matrices, no d×d matrix: the diagonal
/// of C is `Σ_n z_A z_B / N`; `‖C‖² = ⟨G_A, G_B⟩ / N²`, less the diagonal's squares.
fn diagonal_terms(z_a: &Tensor, z_b: &Tensor, g_a: &Tensor, g_b: &Tensor, n: usize) -> CResult<(Tensor, Tensor)> {
    let diag = ((z_a * z_b)?.sum(0)? / n as f64)?;
    let on = (diag.clone() - 1.0)?.sqr()?.sum_all()?;
    let diag_sq = diag.sqr()?.to_dtype(DType::F64)?.sum_all()?;
    let all = (g_a.to_dtype(DType::F64)? * g_b.to_dtype(DType::F64)?)?.sum_all()?;
    let off = ((all / (n * n) as f64)? - diag_sq)?.to_dtype(z_a.dtype())?;
    Ok((on, off))
}

/// Draw the mixing coefficient α ~ Beta(1, 1) and a uniform permutation of `0..n` (Fisher–Yates).
pub fn sample_mix<R: Rng + ?Sized>(rng: &mut R, n: usize) -> (Vec<usize>, f64) {
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let alpha = Beta::new(1.0, 1.0).expect("Beta(1,1)").sample(rng);
    (perm, alpha)
}

/// [`sample_mix`] with the permutation in `groups` blocks of `n / groups` rows, each permuted
/// within itself (block `g` maps rows `g·n/G …` among themselves), then one α: the permutation
/// of `groups` data-parallel ranks that each permute their own batch (`main_imagenet.py`'s
/// `torch.randperm(batch_size)` is per GPU), drawn from one generator so that every rank, and
/// one process asked for the same blocks, draws the same. `groups` ≤ 1 is [`sample_mix`].
pub fn sample_mix_grouped<R: Rng + ?Sized>(rng: &mut R, n: usize, groups: usize) -> (Vec<usize>, f64) {
    if groups <= 1 {
        return sample_mix(rng, n);
    }
    let per = n / groups;
    let mut perm = Vec::with_capacity(n);
    for g in 0..groups {
        let mut p: Vec<usize> = (g * per..(g + 1) * per).collect();
        p.shuffle(rng);
        perm.extend(p);
    }
    let alpha = Beta::new(1.0, 1.0).expect("Beta(1,1)").sample(rng);
    (perm, alpha)
}

/// Row-index tensor for `perm` on `device`.
pub fn perm_tensor(perm: &[usize], device: &Device) -> CResult<Tensor> {
    Tensor::from_vec(perm.iter().map(|&i| i as u32).collect::<Vec<_>>(), perm.len(), device)
}

/// The mixed batch `x_m = α·x_a + (1−α)·x_b[perm]` (view A of sample i with view B of sample
/// perm(i)). `1−α` is computed in f64 before the cast, as the original's numpy scalar.
pub fn mix_batch(x_a: &Tensor, x_b: &Tensor, perm: &[usize], alpha: f64) -> CResult<Tensor> {
    if perm.len() != x_a.dim(0)? || x_a.dims() != x_b.dims() {
        candle_core::bail!("mix_batch: views {:?} and {:?} with a permutation of {}", x_a.dims(), x_b.dims(), perm.len())
    }
    let idx = perm_tensor(perm, x_b.device())?;
    (x_a * alpha)? + (x_b.index_select(&idx, 0)? * (1.0 - alpha))?
}

impl MixedBarlowTwins {
    /// Plain Barlow Twins with these weights (λ_reg = 0).
    pub fn plain(lambda_bt: f64, variant: MixVariant, l2_normalize: bool) -> Self {
        Self { lambda_bt, lambda_reg: 0.0, variant, l2_normalize }
    }

    /// `standardize(normalize?(h))`, in `blocks` blocks of rows ([`standardize_blocks`]).
    fn prepare(&self, h: &Tensor, blocks: usize) -> CResult<Tensor> {
        let z = if self.l2_normalize { l2_normalize(h)? } else { h.clone() };
        standardize_blocks(&z, blocks)
    }

    /// The parts with the regulariser weighted as the variant's script weights it (`main.py`:
    /// λ_reg·λ_BT; `main_imagenet.py`: 0.5·λ_BT·λ_reg), checked finite.
    fn assemble(&self, on_diag: Tensor, off_diag: Tensor, loss_bt: Tensor, reg_ma: Tensor, reg_mb: Tensor, inputs: &[(&str, &Tensor)]) -> Result<LossParts> {
        let weight = match self.variant {
            MixVariant::Small => self.lambda_reg * self.lambda_bt,
            MixVariant::ImageNet => 0.5 * self.lambda_bt * self.lambda_reg,
        };
        let loss_reg = ((&reg_ma + &reg_mb)? * weight)?;
        let total = (&loss_bt + &loss_reg)?;
        let parts = LossParts { on_diag, off_diag, loss_bt, reg_ma, reg_mb, loss_reg, total };
        self.check_finite(&parts, inputs)?;
        Ok(parts)
    }

    /// The batch size and the three views' standardised outputs, after checking the shapes and
    /// the permutation.
    fn prepare_mixed(&self, inputs: &[(&str, &Tensor); 3], perm: &[usize], blocks: usize) -> Result<(usize, Tensor, Tensor, Tensor)> {
        let n = self.check_inputs(inputs)?;
        if perm.len() != n {
            return Err(Error::Config(format!("permutation has {} entries for a batch of {n}", perm.len())));
        }
        Ok((n, self.prepare(inputs[0].1, blocks)?, self.prepare(inputs[1].1, blocks)?, self.prepare(inputs[2].1, blocks)?))
    }

    fn check_inputs(&self, hs: &[(&str, &Tensor)]) -> Result<usize> {
        let (_, first) = hs[0];
        let (n, d) = first.dims2().map_err(|_| Error::Config(format!("projector outputs must be [N, D], got {:?}", first.dims())))?;
        for (name, h) in hs {
            if h.dims() != [n, d] {
                return Err(Error::Config(format!("{name} has shape {:?}, expected [{n}, {d}]", h.dims())));
            }
        }
        if n < 2 {
            return Err(Error::ZeroVariance(
                "Barlow Twins needs a batch of at least 2 (the std over the batch of 1 is undefined)".into(),
            ));
        }
        Ok(n)
    }

    /// Plain Barlow Twins on two views (no third pass): the reg terms are zero. In Gram form
    /// where [`Self::compute`] takes it ([`gram_form`]).
    pub fn compute_bt(&self, h_a: &Tensor, h_b: &Tensor) -> Result<LossParts> {
        self.compute_bt_blocks(h_a, h_b, 1)
    }

    /// [`Self::compute_bt`] with the views standardised in `blocks` blocks of rows
    /// ([`standardize_blocks`]: `main_imagenet.py`'s per-GPU statistics).
    pub fn compute_bt_blocks(&self, h_a: &Tensor, h_b: &Tensor, blocks: usize) -> Result<LossParts> {
        let (n, d) = h_a.dims2().unwrap_or((0, 0));
        self.compute_bt_form(h_a, h_b, gram_form(n, d), blocks)
    }

    /// [`Self::compute_bt`] in the form asked for (`gram`: N×N Gram matrices, else the d×d C).
    pub fn compute_bt_in(&self, h_a: &Tensor, h_b: &Tensor, gram_form: bool) -> Result<LossParts> {
        self.compute_bt_form(h_a, h_b, gram_form, 1)
    }

    fn compute_bt_form(&self, h_a: &Tensor, h_b: &Tensor, gram_form: bool, blocks: usize) -> Result<LossParts> {
        let n = self.check_inputs(&[("h_a", h_a), ("h_b", h_b)])?;
        let z_a = self.prepare(h_a, blocks)?;
        let z_b = self.prepare(h_b, blocks)?;
        let (on_diag, off_diag) = if gram_form {
            diagonal_terms(&z_a, &z_b, &gram(&z_a)?, &gram(&z_b)?, n)?
        } else {
            let c = cross_correlation(&z_a, &z_b, n)?;
            (on_diagonal_sq(&c)?, off_diagonal_sq_sum(&c)?)
        };
        let loss_bt = (&on_diag + (&off_diag * self.lambda_bt)?)?;
        let zero = Tensor::zeros((), loss_bt.dtype(), loss_bt.device())?;
        let parts = LossParts {
            on_diag,
            off_diag,
            total: loss_bt.clone(),
            loss_bt,
            reg_ma: zero.clone(),
            reg_mb: zero.clone(),
            loss_reg: zero,
        };
        self.check_finite(&parts, &[("h_a", h_a), ("h_b", h_b)])?;
        Ok(parts)
    }

    /// The full loss with the mixed batch's projector outputs `h_m`, the permutation and α used to
    /// build it. `h_*` are raw projector outputs `[N, D]`. In Gram form when d > N and d is
    /// large ([`gram_form`], [`Self::compute_gram`]), else with the d×d matrices as the original
    /// ([`Self::compute_with_matrices`], the reference).
    pub fn compute(&self, h_a: &Tensor, h_b: &Tensor, h_m: &Tensor, perm: &[usize], alpha: f64) -> Result<LossParts> {
        self.compute_blocks(h_a, h_b, h_m, perm, alpha, 1)
    }

    /// [`Self::compute`] with every view standardised in `blocks` blocks of rows
    /// ([`standardize_blocks`]): `main_imagenet.py` on `blocks` GPUs, where each GPU
    /// standardises its own rows and the cross-correlations are summed over GPUs.
    pub fn compute_blocks(&self, h_a: &Tensor, h_b: &Tensor, h_m: &Tensor, perm: &[usize], alpha: f64, blocks: usize) -> Result<LossParts> {
        let (n, d) = h_a.dims2().unwrap_or((0, 0));
        if gram_form(n, d) {
            return self.compute_gram_blocks(h_a, h_b, h_m, perm, alpha, blocks);
        }
        let (parts, _) = self.compute_with_matrices_blocks(h_a, h_b, h_m, perm, alpha, blocks)?;
        Ok(parts)
    }

    /// The full loss without any d×d matrix: every term is a squared Frobenius norm of a
    /// cross-correlation `AᵀB/N` of two `[N, d]` matrices, and `‖AᵀB‖² = ⟨AAᵀ, BBᵀ⟩` is an inner
    /// product of `N×N` Gram matrices. The regulariser's difference is one such product:
    /// `C^MA − C^MA_gt = D_Aᵀ Z_A / N` with `D_A = Z_M − α Z_A − (1−α) Z_{B_π}`, and
    /// `C^MB − C^MB_gt = D_Aᵀ Z_B / N` (`main.py`; as coded in `main_imagenet.py`, `D_B = Z_M −
    /// α Z_B − (1−α) Z_{B_π}`). The diagonal of C is O(N·d); the off-diagonal sum is `‖C‖² −
    /// Σ C_ii²`. Three Gram matrices (`Z_A Z_Aᵀ`, `Z_B Z_Bᵀ`, `D Dᵀ`): O(N²·d) FLOPs and memory
    /// O(N² + N·d) instead of O(N·d²) and several d×d matrices; the gradient is autograd's
    /// through the same few products. The inner products are summed in f64.
    pub fn compute_gram(&self, h_a: &Tensor, h_b: &Tensor, h_m: &Tensor, perm: &[usize], alpha: f64) -> Result<LossParts> {
        self.compute_gram_blocks(h_a, h_b, h_m, perm, alpha, 1)
    }

    fn compute_gram_blocks(&self, h_a: &Tensor, h_b: &Tensor, h_m: &Tensor, perm: &[usize], alpha: f64, blocks: usize) -> Result<LossParts> {
        let inputs = [("h_a", h_a), ("h_b", h_b), ("h_m", h_m)];
        let (n, z_a, z_b, z_m) = self.prepare_mixed(&inputs, perm, blocks)?;
        let (g_a, g_b) = (gram(&z_a)?, gram(&z_b)?);
        let (on_diag, off_diag) = diagonal_terms(&z_a, &z_b, &g_a, &g_b, n)?;
        let loss_bt = (&on_diag + (&off_diag * self.lambda_bt)?)?;
        let z_bp = z_b.index_select(&perm_tensor(perm, z_b.device())?, 0)?;
        let rest = (z_bp * (1.0 - alpha))?;
        let d_a = ((&z_m - (&z_a * alpha)?)? - &rest)?;
        let g_da = gram(&d_a)?;
        let nn = (n * n) as f64;
        let reg_ma = (gram_inner(&g_da, &g_a)? / nn)?;
        let reg_mb = match self.variant {
            MixVariant::Small => (gram_inner(&g_da, &g_b)? / nn)?,
            MixVariant::ImageNet => {
                let d_b = ((&z_m - (&z_b * alpha)?)? - &rest)?;
                (gram_inner(&gram(&d_b)?, &g_b)? / nn)?
            }
        };
        let parts = self.assemble(on_diag, off_diag, loss_bt, reg_ma, reg_mb, &inputs)?;
        Ok(parts)
    }

    /// As [`compute`](Self::compute), also returning C, C^MA, C^MA_gt, C^MB, C^MB_gt.
    pub fn compute_with_matrices(
        &self,
        h_a: &Tensor,
        h_b: &Tensor,
        h_m: &Tensor,
        perm: &[usize],
        alpha: f64,
    ) -> Result<(LossParts, CrossCorrelations)> {
        self.compute_with_matrices_blocks(h_a, h_b, h_m, perm, alpha, 1)
    }

    fn compute_with_matrices_blocks(
        &self,
        h_a: &Tensor,
        h_b: &Tensor,
        h_m: &Tensor,
        perm: &[usize],
        alpha: f64,
        blocks: usize,
    ) -> Result<(LossParts, CrossCorrelations)> {
        let inputs = [("h_a", h_a), ("h_b", h_b), ("h_m", h_m)];
        let (n, z_a, z_b, z_m) = self.prepare_mixed(&inputs, perm, blocks)?;
        let c = cross_correlation(&z_a, &z_b, n)?;
        let on_diag = on_diagonal_sq(&c)?;
        let off_diag = off_diagonal_sq_sum(&c)?;
        let loss_bt = (&on_diag + (&off_diag * self.lambda_bt)?)?;

        let z_bp = z_b.index_select(&perm_tensor(perm, z_b.device())?, 0)?;
        let c_ma = cross_correlation(&z_m, &z_a, n)?;
        let c_ma_gt = ((cross_correlation(&z_a, &z_a, n)? * alpha)? + (cross_correlation(&z_bp, &z_a, n)? * (1.0 - alpha))?)?;
        let c_mb = cross_correlation(&z_m, &z_b, n)?;
        let first = match self.variant {
            MixVariant::Small => c.clone(),
            MixVariant::ImageNet => cross_correlation(&z_b, &z_b, n)?,
        };
        let c_mb_gt = ((first * alpha)? + (cross_correlation(&z_bp, &z_b, n)? * (1.0 - alpha))?)?;
        let reg_ma = (&c_ma - &c_ma_gt)?.sqr()?.sum_all()?;
        let reg_mb = (&c_mb - &c_mb_gt)?.sqr()?.sum_all()?;
        let parts = self.assemble(on_diag, off_diag, loss_bt, reg_ma, reg_mb, &inputs)?;
        let mats =
            CrossCorrelations { c, c_ma: Some(c_ma), c_ma_gt: Some(c_ma_gt), c_mb: Some(c_mb), c_mb_gt: Some(c_mb_gt) };
        Ok((parts, mats))
    }

    /// One host read of the total; when it is not finite, say why (a zero-variance column).
    fn check_finite(&self, parts: &LossParts, inputs: &[(&str, &Tensor)]) -> Result<()> {
        let total = parts.total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if total.is_finite() {
            return Ok(());
        }
        // Non-finite inputs first: they are the cause, and they can also look like zero variance.
        for (name, h) in inputs {
            let v: Vec<f64> = h.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            let bad = v.iter().filter(|x| !x.is_finite()).count();
            if bad > 0 {
                return Err(Error::NonFinite(format!("{name} contains NaN or infinite values ({bad} of {} entries)", v.len())));
            }
        }
        for (name, h) in inputs {
            let z = if self.l2_normalize { l2_normalize(h)? } else { (*h).clone() };
            let n = z.dim(0)?;
            let var = (z.broadcast_sub(&z.mean_keepdim(0)?)?.sqr()?.sum(0)? / (n as f64 - 1.0))?;
            let var: Vec<f64> = var.to_dtype(DType::F64)?.to_vec1()?;
            let zero: Vec<usize> = var.iter().enumerate().filter(|(_, v)| **v == 0.0).map(|(i, _)| i).collect();
            if !zero.is_empty() {
                let shown: Vec<String> = zero.iter().take(8).map(|i| i.to_string()).collect();
                return Err(Error::ZeroVariance(format!(
                    "{name}: {} of {} columns have zero variance over the batch of {n} (columns {}{}); \
                     the Barlow Twins standardisation divides by the std, which is 0 (collapsed or constant outputs)",
                    zero.len(),
                    var.len(),
                    shown.join(", "),
                    if zero.len() > 8 { ", …" } else { "" }
                )));
            }
        }
        Err(Error::NonFinite(format!("the loss is {total} (inputs are finite with non-zero variance)")))
    }
}

/// Standardised outputs for notebooks: `standardize(normalize?(h))` as the loss sees them.
pub fn prepared(h: &Tensor, l2: bool) -> CResult<Tensor> {
    let z = if l2 { l2_normalize(h)? } else { h.clone() };
    standardize(&z)
}

