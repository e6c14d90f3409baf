//! Parity of the Mixed Barlow Twins loss with the original code (reference §10), and gradients
//! checked by finite differences.

use candle_core::{DType, Device, Tensor, Var};
use mixbt::loss::{MixVariant, MixedBarlowTwins};
use mixbt::rng::SplitMix64;

/// The reference inputs of §10: SplitMix64 draws in the documented order.
struct RefInputs {
    h_a: Vec<f64>,
    h_b: Vec<f64>,
    h_m: Vec<f64>,
    lam: f64,
    perm: Vec<usize>,
    n: usize,
    d: usize,
}

fn reference_inputs(seed: u64, n: usize, d: usize) -> RefInputs {
    let mut r = SplitMix64::new(seed);
    let h_a: Vec<f64> = (0..n * d).map(|_| r.next_sym()).collect();
    let h_b: Vec<f64> = (0..n * d).map(|_| r.next_sym()).collect();
    let lam = r.next_f64();
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (r.next_u64() % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    let mut h_m = vec![0.0; n * d];
    for i in 0..n {
        for k in 0..d {
            h_m[i * d + k] = lam * h_a[i * d + k] + (1.0 - lam) * h_b[perm[i] * d + k] + 0.1 * r.next_sym();
        }
    }
    RefInputs { h_a, h_b, h_m, lam, perm, n, d }
}

fn t(v: &[f64], n: usize, d: usize, dt: DType) -> Tensor {
    Tensor::from_vec(v.to_vec(), (n, d), &Device::Cpu).unwrap().to_dtype(dt).unwrap()
}

fn s(x: &Tensor) -> f64 {
    x.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn assert_rel(name: &str, got: f64, want: f64, tol: f64) {
    let rel = ((got - want) / want).abs();
    assert!(rel <= tol, "{name}: got {got:.9e}, want {want:.9e} (relative error {rel:.2e} > {tol:.0e})");
}

#[test]
fn generator_matches_reference() {
    let r = reference_inputs(0, 8, 16);
    assert_rel("lambda", r.lam, 7.96332193e-01, 1e-8);
    assert_eq!(r.perm, vec![3, 6, 0, 4, 7, 2, 5, 1]);
    assert_rel("h_a[0][0]", r.h_a[0], 7.66621616e-01, 1e-8);
    assert_rel("h_a[0][1]", r.h_a[1], -1.36944006e-01, 1e-8);
    assert_rel("sum h_a", r.h_a.iter().sum(), 1.53701834e+00, 1e-8);
    assert_rel("sum h_b", r.h_b.iter().sum(), 2.50779414e+00, 1e-8);
    assert_rel("sum h_m", r.h_m.iter().sum(), 8.42544796e-01, 1e-8);
}

struct Want {
    c00: f64,
    c01: f64,
    on_diag: f64,
    off_diag: f64,
    loss_bt: f64,
    reg_ma: f64,
    reg_mb: f64,
    loss_reg: f64,
    total: f64,
}

fn check(variant: MixVariant, lambda_bt: f64, lambda_reg: f64, l2: bool, r: &RefInputs, w: &Want, dt: DType, tol: f64) {
    let loss = MixedBarlowTwins { lambda_bt, lambda_reg, variant, l2_normalize: l2 };
    let (h_a, h_b, h_m) = (t(&r.h_a, r.n, r.d, dt), t(&r.h_b, r.n, r.d, dt), t(&r.h_m, r.n, r.d, dt));
    let (p, m) = loss.compute_with_matrices(&h_a, &h_b, &h_m, &r.perm, r.lam).unwrap();
    assert_eq!(p.total.dtype(), dt);
    let c: Vec<Vec<f64>> = m.c.to_dtype(DType::F64).unwrap().to_vec2().unwrap();
    assert_rel("c00", c[0][0], w.c00, tol);
    assert_rel("c01", c[0][1], w.c01, tol * 10.0); // small entry: absolute error of the sums dominates
    assert_rel("on_diag", s(&p.on_diag), w.on_diag, tol);
    assert_rel("off_diag", s(&p.off_diag), w.off_diag, tol);
    assert_rel("loss_bt", s(&p.loss_bt), w.loss_bt, tol);
    assert_rel("reg_ma", s(&p.reg_ma), w.reg_ma, tol);
    assert_rel("reg_mb", s(&p.reg_mb), w.reg_mb, tol);
    assert_rel("loss_reg", s(&p.loss_reg), w.loss_reg, tol);
    assert_rel("total", s(&p.total), w.total, tol);
    // The same in Gram form (which `compute` takes from d = GRAM_MIN_D on, with d > N); at this
    // small d `compute` keeps the d×d form, bit for bit.
    assert!(!mixbt::loss::gram_form(r.n, r.d) && mixbt::loss::gram_form(r.n, mixbt::loss::GRAM_MIN_D));
    assert_eq!(s(&loss.compute(&h_a, &h_b, &h_m, &r.perm, r.lam).unwrap().total), s(&p.total));
    let q = loss.compute_gram(&h_a, &h_b, &h_m, &r.perm, r.lam).unwrap();
    for (name, got, want) in [
        ("gram on_diag", &q.on_diag, w.on_diag),
        ("gram off_diag", &q.off_diag, w.off_diag),
        ("gram reg_ma", &q.reg_ma, w.reg_ma),
        ("gram reg_mb", &q.reg_mb, w.reg_mb),
        ("gram total", &q.total, w.total),
    ] {
        assert_rel(name, s(got), want, tol);
    }
}

const SMALL_SEED0: Want = Want {
    c00: 2.48352460e-01,
    c01: 2.38287448e-02,
    on_diag: 1.76181208e+01,
    off_diag: 2.83678707e+01,
    loss_bt: 1.78397448e+01,
    reg_ma: 2.01393882e+00,
    reg_mb: 1.91220807e+00,
    loss_reg: 1.22692090e-01,
    total: 1.79624369e+01,
};

const IMAGENET_SEED0: Want = Want {
    c00: 2.78535098e-01,
    c01: -2.39103506e-02,
    on_diag: 1.78885504e+01,
    off_diag: 2.84208234e+01,
    loss_bt: 1.80334966e+01,
    reg_ma: 2.06130318e+00,
    reg_mb: 6.26918353e+01,
    loss_reg: 1.65120503e-01,
    total: 1.81986171e+01,
};

#[test]
fn small_seed0_f32_and_f64() {
    let r = reference_inputs(0, 8, 16);
    check(MixVariant::Small, 0.0078125, 4.0, true, &r, &SMALL_SEED0, DType::F32, 1e-5);
    check(MixVariant::Small, 0.0078125, 4.0, true, &r, &SMALL_SEED0, DType::F64, 1e-8);
}

#[test]
fn imagenet_as_coded_seed0_f32_and_f64() {
    let r = reference_inputs(0, 8, 16);
    check(MixVariant::ImageNet, 0.0051, 1.0, false, &r, &IMAGENET_SEED0, DType::F32, 1e-5);
    check(MixVariant::ImageNet, 0.0051, 1.0, false, &r, &IMAGENET_SEED0, DType::F64, 1e-8);
}

#[test]
fn seed1_both_variants() {
    let r = reference_inputs(1, 16, 32);
    for dt in [DType::F32, DType::F64] {
        let tol = if dt == DType::F32 { 1e-5 } else { 1e-8 };
        let small = MixedBarlowTwins { lambda_bt: 0.0078125, lambda_reg: 4.0, variant: MixVariant::Small, l2_normalize: true };
        let (a, b, m) = (t(&r.h_a, 16, 32, dt), t(&r.h_b, 16, 32, dt), t(&r.h_m, 16, 32, dt));
        let p = small.compute(&a, &b, &m, &r.perm, r.lam).unwrap();
        assert_rel("small loss_bt", s(&p.loss_bt), 3.17128723e+01, tol);
        assert_rel("small loss_reg", s(&p.loss_reg), 6.11715963e-01, tol);
        assert_rel("small total", s(&p.total), 3.23245882e+01, tol);
        let inet = MixedBarlowTwins { lambda_bt: 0.0051, lambda_reg: 1.0, variant: MixVariant::ImageNet, l2_normalize: false };
        let p = inet.compute(&a, &b, &m, &r.perm, r.lam).unwrap();
        assert_rel("imagenet loss_bt", s(&p.loss_bt), 3.15738415e+01, tol);
        assert_rel("imagenet loss_reg", s(&p.loss_reg), 1.63070129e-01, tol);
        assert_rel("imagenet total", s(&p.total), 3.17369116e+01, tol);
    }
}

#[test]
fn readme_formula_differs_from_imagenet_code() {
    // The README formula for C^MB_gt (= the Small variant's) gives reg_mb 1.889 on the ImageNet
    // inputs, where the ImageNet code gives 62.69: the quirk is real and we keep it.
    let r = reference_inputs(0, 8, 16);
    let readme = MixedBarlowTwins { lambda_bt: 0.0051, lambda_reg: 1.0, variant: MixVariant::Small, l2_normalize: false };
    let (a, b, m) = (t(&r.h_a, 8, 16, DType::F64), t(&r.h_b, 8, 16, DType::F64), t(&r.h_m, 8, 16, DType::F64));
    let p = readme.compute(&a, &b, &m, &r.perm, r.lam).unwrap();
    assert_rel("reg_mb README formula", s(&p.reg_mb), 1.88944976e+00, 1e-8);
    // Small weighting is λ_reg·λ_BT, ImageNet 0.5·λ_BT·λ_reg: with the same matrices the ratio is 2.
    let inet = MixedBarlowTwins { variant: MixVariant::ImageNet, ..readme };
    let q = inet.compute(&a, &b, &m, &r.perm, r.lam).unwrap();
    assert_rel("reg_ma same", s(&q.reg_ma), s(&p.reg_ma), 1e-12);
    // The quirk: the ImageNet code's C^MB_gt (α·Z_Bᵀ Z_B first term) gives a far larger reg_mb.
    assert_rel("reg_mb ImageNet code", s(&q.reg_mb), 62.69, 1e-3);
    assert!(s(&q.reg_mb) > 30.0 * s(&p.reg_mb));
    // Each variant's weight on reg_ma + reg_mb, and their ratio of 2.
    let w_small = s(&p.loss_reg) / (s(&p.reg_ma) + s(&p.reg_mb));
    let w_inet = s(&q.loss_reg) / (s(&q.reg_ma) + s(&q.reg_mb));
    assert_rel("Small weight λ_reg·λ_BT", w_small, 1.0 * 0.0051, 1e-12);
    assert_rel("ImageNet weight 0.5·λ_BT·λ_reg", w_inet, 0.5 * 0.0051 * 1.0, 1e-12);
    assert_rel("weight ratio", w_small / w_inet, 2.0, 1e-12);
}

#[test]
fn identical_views_give_d_over_n_squared() {
    let r = reference_inputs(3, 8, 16);
    let a = t(&r.h_a, 8, 16, DType::F64);
    let loss = MixedBarlowTwins::plain(0.0078125, MixVariant::Small, true);
    let p = loss.compute_bt(&a, &a).unwrap();
    assert_rel("on_diag", s(&p.on_diag), 16.0 / 64.0, 1e-12);
    assert_eq!(s(&p.loss_reg), 0.0);
}

#[test]
fn zero_variance_column_is_a_clear_error() {
    let r = reference_inputs(0, 8, 16);
    let mut ha = r.h_a.clone();
    for i in 0..8 {
        ha[i * 16 + 5] = 0.25; // column 5 constant over the batch
    }
    let loss = MixedBarlowTwins { lambda_bt: 0.0051, lambda_reg: 1.0, variant: MixVariant::ImageNet, l2_normalize: false };
    let err = loss
        .compute(&t(&ha, 8, 16, DType::F32), &t(&r.h_b, 8, 16, DType::F32), &t(&r.h_m, 8, 16, DType::F32), &r.perm, r.lam)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, mixbt::Error::ZeroVariance(_)), "{msg}");
    assert!(msg.contains("h_a") && msg.contains("columns 5"), "{msg}");
    // A batch of one cannot be standardised either.
    let one = Tensor::ones((1, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(loss.compute_bt(&one, &one), Err(mixbt::Error::ZeroVariance(_))));
}

/// Central finite differences of the total loss against autograd, in f64, for every input entry
/// (N = 6, d = 5 in the d×d form; N = 4, d = 7 in the Gram form).
fn grad_check(variant: MixVariant, l2: bool) {
    for (n, d, gram) in [(6, 5, false), (4, 7, true)] {
        grad_check_at(variant, l2, n, d, gram);
    }
}

fn grad_check_at(variant: MixVariant, l2: bool, n: usize, d: usize, gram: bool) {
    let r = reference_inputs(7, n, d);
    let loss = MixedBarlowTwins { lambda_bt: 0.05, lambda_reg: 2.0, variant, l2_normalize: l2 };
    let eval = |a: &Tensor, b: &Tensor, m: &Tensor| {
        if gram {
            loss.compute_gram(a, b, m, &r.perm, r.lam).unwrap()
        } else {
            loss.compute_with_matrices(a, b, m, &r.perm, r.lam).unwrap().0
        }
    };
    let f = |a: &[f64], b: &[f64], m: &[f64]| -> f64 { s(&eval(&t(a, n, d, DType::F64), &t(b, n, d, DType::F64), &t(m, n, d, DType::F64)).total) };
    let va = Var::from_tensor(&t(&r.h_a, n, d, DType::F64)).unwrap();
    let vb = Var::from_tensor(&t(&r.h_b, n, d, DType::F64)).unwrap();
    let vm = Var::from_tensor(&t(&r.h_m, n, d, DType::F64)).unwrap();
    let p = eval(va.as_tensor(), vb.as_tensor(), vm.as_tensor());
    let grads = p.total.backward().unwrap();
    let eps = 1e-6;
    for (which, var) in [(0, &va), (1, &vb), (2, &vm)] {
        let g: Vec<f64> = grads.get(var).expect("gradient flows to every input").flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..n * d {
            let mut ins = [r.h_a.clone(), r.h_b.clone(), r.h_m.clone()];
            ins[which][i] += eps;
            let up = f(&ins[0], &ins[1], &ins[2]);
            ins[which][i] -= 2.0 * eps;
            let down = f(&ins[0], &ins[1], &ins[2]);
            let fd = (up - down) / (2.0 * eps);
            assert!((fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()), "N {n}, d {d}, input {which} entry {i}: autograd {} vs finite difference {fd}", g[i]);
        }
    }
}

#[test]
fn gradients_small() {
    grad_check(MixVariant::Small, true);
}

#[test]
fn gradients_imagenet() {
    grad_check(MixVariant::ImageNet, false);
}

#[test]
fn mixed_batch_is_alpha_a_plus_one_minus_alpha_b_perm() {
    let a = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
    let b = (Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((3, 4)).unwrap() * 10.0).unwrap();
    let perm = [2usize, 0, 1];
    let m: Vec<Vec<f32>> = mixbt::loss::mix_batch(&a, &b, &perm, 0.25).unwrap().to_vec2().unwrap();
    let av: Vec<Vec<f32>> = a.to_vec2().unwrap();
    let bv: Vec<Vec<f32>> = b.to_vec2().unwrap();
    for i in 0..3 {
        for k in 0..4 {
            let want = 0.25f32 * av[i][k] + 0.75f32 * bv[perm[i]][k];
            assert!((m[i][k] - want).abs() < 1e-5);
        }
    }
    // α ~ Beta(1,1) is uniform: mean ≈ 1/2, and perm is a permutation.
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut sum = 0.0;
    for _ in 0..4000 {
        let (p, al) = mixbt::loss::sample_mix(&mut rng, 8);
        let mut q = p.clone();
        q.sort();
        assert_eq!(q, (0..8).collect::<Vec<_>>());
        assert!((0.0..=1.0).contains(&al));
        sum += al;
    }
    assert!((sum / 4000.0 - 0.5).abs() < 0.02);
}

/// The loss's parts and its gradients with respect to the three inputs.
fn parts_and_grads(
    loss: &MixedBarlowTwins,
    r: &RefInputs,
    dt: DType,
    f: impl Fn(&MixedBarlowTwins, &Tensor, &Tensor, &Tensor) -> mixbt::loss::LossParts,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let vars: Vec<Var> = [&r.h_a, &r.h_b, &r.h_m].iter().map(|h| Var::from_tensor(&t(h, r.n, r.d, dt)).unwrap()).collect();
    let p = f(loss, vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor());
    let grads = p.total.backward().unwrap();
    // No gradient (plain Barlow Twins and the mixed batch): zeros.
    let g = vars
        .iter()
        .map(|v| grads.get(v).map_or(vec![0.0; r.n * r.d], |g| g.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    (vec![s(&p.on_diag), s(&p.off_diag), s(&p.reg_ma), s(&p.reg_mb), s(&p.total)], g)
}

fn assert_grads_close(what: &str, got: &[Vec<f64>], want: &[Vec<f64>], tol: f64) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let scale = w.iter().fold(0f64, |m, x| m.max(x.abs()));
        let err = g.iter().zip(w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= tol * scale, "{what}: gradient of input {k} differs by {err:.3e} (largest entry {scale:.3e}, tolerance {tol:.0e} of it)");
    }
}

/// The Gram form (no d×d matrix) gives the reference form's loss and gradients, for both
/// variants and plain Barlow Twins, in f64 and f32.
#[test]
fn gram_form_matches_the_matrices() {
    for (n, d) in [(16, 64), (32, 256)] {
        let r = reference_inputs(11, n, d);
        for (variant, l2, lambda_bt, lambda_reg) in [(MixVariant::Small, true, 0.0078125, 4.0), (MixVariant::ImageNet, false, 0.0051, 1.0)] {
            let loss = MixedBarlowTwins { lambda_bt, lambda_reg, variant, l2_normalize: l2 };
            for (dt, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
                let what = format!("{variant:?}, N {n}, d {d}, {dt:?}");
                let (pm, gm) = parts_and_grads(&loss, &r, dt, |l, a, b, m| l.compute_with_matrices(a, b, m, &r.perm, r.lam).unwrap().0);
                let (pg, gg) = parts_and_grads(&loss, &r, dt, |l, a, b, m| l.compute_gram(a, b, m, &r.perm, r.lam).unwrap());
                for (i, name) in ["on_diag", "off_diag", "reg_ma", "reg_mb", "total"].iter().enumerate() {
                    assert_rel(&format!("{what} {name}"), pg[i], pm[i], tol);
                }
                assert_grads_close(&what, &gg, &gm, tol);
                let plain = MixedBarlowTwins::plain(lambda_bt, variant, l2);
                let (bm, gbm) = parts_and_grads(&plain, &r, dt, |l, a, b, _| l.compute_bt_in(a, b, false).unwrap());
                let (bg, gbg) = parts_and_grads(&plain, &r, dt, |l, a, b, _| l.compute_bt_in(a, b, true).unwrap());
                assert_rel(&format!("{what} plain BT"), bg[4], bm[4], tol);
                assert_grads_close(&format!("{what} plain BT"), &gbg[..2], &gbm[..2], tol);
            }
        }
    }
}

/// Standardise the columns of a row-major `[n, d]` matrix in f64 (optionally L2-normalising the
/// rows first), as the loss does.
fn standardize_f64(h: &[f64], n: usize, d: usize, l2: bool) -> Vec<f64> {
    let mut z = h.to_vec();
    if l2 {
        for row in z.chunks_mut(d) {
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
    for k in 0..d {
        let mean = (0..n).map(|i| z[i * d + k]).sum::<f64>() / n as f64;
        let var = (0..n).map(|i| (z[i * d + k] - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        for i in 0..n {
            z[i * d + k] = (z[i * d + k] - mean) / var.sqrt();
        }
    }
    z
}

/// The loss's parts at d = 8192 from every d×d entry, one row at a time in f64 (no matrix
/// stored): C, C^MA and its target, C^MB and its target, entry by entry as the original.
fn streamed_reference(loss: &MixedBarlowTwins, r: &RefInputs) -> [f64; 5] {
    let (n, d, al) = (r.n, r.d, r.lam);
    let za = standardize_f64(&r.h_a, n, d, loss.l2_normalize);
    let zb = standardize_f64(&r.h_b, n, d, loss.l2_normalize);
    let zm = standardize_f64(&r.h_m, n, d, loss.l2_normalize);
    let zbp: Vec<f64> = (0..n).flat_map(|i| zb[r.perm[i] * d..(r.perm[i] + 1) * d].to_vec()).collect();
    let nf = n as f64;
    let (mut on, mut off, mut ma, mut mb) = (0.0, 0.0, 0.0, 0.0);
    let mut rows = vec![vec![0.0; d]; 7];
    for i in 0..d {
        rows.iter_mut().for_each(|r| r.iter_mut().for_each(|x| *x = 0.0));
        for s in 0..n {
            let (a, b, m, p) = (za[s * d + i], zb[s * d + i], zm[s * d + i], zbp[s * d + i]);
            let (ra, rb) = (&za[s * d..(s + 1) * d], &zb[s * d..(s + 1) * d]);
            for j in 0..d {
                rows[0][j] += a * rb[j]; // C = Z_Aᵀ Z_B
                rows[1][j] += m * ra[j]; // C^MA = Z_Mᵀ Z_A
                rows[2][j] += a * ra[j]; // Z_Aᵀ Z_A
                rows[3][j] += p * ra[j]; // Z_Bπᵀ Z_A
                rows[4][j] += m * rb[j]; // C^MB = Z_Mᵀ Z_B
                rows[5][j] += b * rb[j]; // Z_Bᵀ Z_B (the ImageNet code's first term)
                rows[6][j] += p * rb[j]; // Z_Bπᵀ Z_B
            }
        }
        for j in 0..d {
            let c = rows[0][j] / nf;
            if i == j {
                on += (c - 1.0).powi(2);
            } else {
                off += c * c;
            }
            let ma_gt = (al * rows[2][j] + (1.0 - al) * rows[3][j]) / nf;
            ma += (rows[1][j] / nf - ma_gt).powi(2);
            let first = if loss.variant == MixVariant::Small { rows[0][j] } else { rows[5][j] };
            let mb_gt = (al * first + (1.0 - al) * rows[6][j]) / nf;
            mb += (rows[4][j] / nf - mb_gt).powi(2);
        }
    }
    let w = if loss.variant == MixVariant::Small { loss.lambda_reg * loss.lambda_bt } else { 0.5 * loss.lambda_bt * loss.lambda_reg };
    [on, off, ma, mb, on + loss.lambda_bt * off + w * (ma + mb)]
}

/// At the paper's ImageNet width, d = 8192: the Gram form against a float64 reference computed
/// entry by entry (losses, both variants), and its f32 gradients against its f64 ones.
#[test]
fn gram_form_at_d_8192() {
    let r = reference_inputs(5, 8, 8192);
    for (variant, l2, lambda_bt, lambda_reg) in [(MixVariant::Small, true, 0.0078125, 4.0), (MixVariant::ImageNet, false, 0.0051, 1.0)] {
        let loss = MixedBarlowTwins { lambda_bt, lambda_reg, variant, l2_normalize: l2 };
        let want = streamed_reference(&loss, &r);
        let mut grads = vec![];
        for (dt, tol) in [(DType::F64, 1e-9), (DType::F32, 1e-5)] {
            let (p, g) = parts_and_grads(&loss, &r, dt, |l, a, b, m| l.compute(a, b, m, &r.perm, r.lam).unwrap());
            for (i, name) in ["on_diag", "off_diag", "reg_ma", "reg_mb", "total"].iter().enumerate() {
                assert_rel(&format!("{variant:?} d 8192 {dt:?} {name}"), p[i], want[i], tol);
            }
            grads.push(g);
        }
        assert_grads_close(&format!("{variant:?} d 8192 f32 vs f64"), &grads[1], &grads[0], 1e-5);
    }
}
