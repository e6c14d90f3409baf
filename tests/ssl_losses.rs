//! The baselines' losses against PyTorch in float64 (values and gradients; fixtures written by
//! scripts/make_ssl_loss_fixtures.py from the formulas of reference §7), the whitened batch's
//! covariance, and the inverse-Cholesky op's backward by finite differences.

use candle_core::{DType, Device, Tensor, Var};
use mixbt::loss::{norm_mse, nt_xent, whiten};

fn fixtures() -> serde_json::Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ssl_losses.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vec(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn var(v: &serde_json::Value, n: usize, d: usize) -> Var {
    Var::from_tensor(&Tensor::from_vec(vec(v), (n, d), &Device::Cpu).unwrap()).unwrap()
}

fn max_rel(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn nt_xent_and_norm_mse_equal_pytorch() {
    let f = fixtures();
    for c in f["nt_xent"].as_array().unwrap() {
        let (n, d, tau) = (c["n"].as_u64().unwrap() as usize, c["d"].as_u64().unwrap() as usize, c["tau"].as_f64().unwrap());
        let (a, b) = (var(&c["a"], n, d), var(&c["b"], n, d));
        let loss = nt_xent(a.as_tensor(), b.as_tensor(), tau).unwrap();
        let got = loss.to_scalar::<f64>().unwrap();
        let want = c["loss"].as_f64().unwrap();
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "nt_xent n {n} tau {tau}: {got} vs {want}");
        let g = loss.backward().unwrap();
        assert!(max_rel(&flat(g.get(&a).unwrap()), &vec(&c["grad_a"])) < 1e-10, "nt_xent grad a, tau {tau}");
        assert!(max_rel(&flat(g.get(&b).unwrap()), &vec(&c["grad_b"])) < 1e-10, "nt_xent grad b, tau {tau}");
        // f32 too, to f32 precision.
        let a32 = a.as_tensor().to_dtype(DType::F32).unwrap();
        let b32 = b.as_tensor().to_dtype(DType::F32).unwrap();
        let l32 = nt_xent(&a32, &b32, tau).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        assert!((l32 - want).abs() < 1e-4 * want.abs().max(1.0), "f32 nt_xent {l32} vs {want}");
    }
    for c in f["norm_mse"].as_array().unwrap() {
        let (n, d) = (c["n"].as_u64().unwrap() as usize, c["d"].as_u64().unwrap() as usize);
        let (a, b) = (var(&c["a"], n, d), var(&c["b"], n, d));
        let loss = norm_mse(a.as_tensor(), b.as_tensor()).unwrap();
        let want = c["loss"].as_f64().unwrap();
        assert!((loss.to_scalar::<f64>().unwrap() - want).abs() < 1e-13, "norm_mse");
        let g = loss.backward().unwrap();
        assert!(max_rel(&flat(g.get(&a).unwrap()), &vec(&c["grad_a"])) < 1e-10);
        assert!(max_rel(&flat(g.get(&b).unwrap()), &vec(&c["grad_b"])) < 1e-10);
    }
    // Shapes are checked.
    let x = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
    assert!(nt_xent(&x, &y, 0.5).unwrap_err().to_string().contains("differ in shape"));
    assert!(nt_xent(&x, &x, 0.0).unwrap_err().to_string().contains("tau"));
}

#[test]
fn whitening_equals_pytorch_and_whitens() {
    let f = fixtures();
    let cases = f["whiten"].as_array().unwrap();
    assert_eq!(cases.iter().filter(|c| c["eps"].as_f64() == Some(0.0)).count(), 2);
    for c in cases {
        let (n, d, eps) = (c["n"].as_u64().unwrap() as usize, c["d"].as_u64().unwrap() as usize, c["eps"].as_f64().unwrap());
        let x = var(&c["x"], n, d);
        let w = Tensor::from_vec(vec(&c["w"]), (n, d), &Device::Cpu).unwrap();
        let y = whiten(x.as_tensor(), eps).unwrap();
        assert!(max_rel(&flat(&y), &vec(&c["y"])) < 1e-10, "whiten values, n {n} d {d} eps {eps}");
        let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_rel(&flat(g.get(&x).unwrap()), &vec(&c["grad"])) < 1e-8, "whiten gradient, n {n} d {d} eps {eps}");
        if eps == 0.0 {
            // The whitened batch has identity covariance (N − 1 normalisation).
            let cov = (y.t().unwrap().matmul(&y).unwrap() / (n - 1) as f64).unwrap();
            let eye = Tensor::eye(d, DType::F64, &Device::Cpu).unwrap();
            let err = (cov - eye).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(err < 1e-10, "covariance of the whitened batch differs from I by {err}");
        }
    }
    // f32 input, f32 output, close to the f64 result.
    let c = &cases[0];
    let (n, d) = (c["n"].as_u64().unwrap() as usize, c["d"].as_u64().unwrap() as usize);
    let x32 = Tensor::from_vec(vec(&c["x"]), (n, d), &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
    let y32 = whiten(&x32, 0.0).unwrap();
    assert_eq!(y32.dtype(), DType::F32);
    assert!(max_rel(&flat(&y32.to_dtype(DType::F64).unwrap()), &vec(&c["y"])) < 1e-4);
    // A rank-deficient batch (N ≤ D) is a clear error without shrinkage, fine with it.
    let small = Tensor::from_vec((0..12).map(|i| ((i * 7) % 5) as f64).collect::<Vec<_>>(), (3, 4), &Device::Cpu).unwrap();
    let err = whiten(&small, 0.0).unwrap_err();
    let e = err.to_string();
    assert!(e.contains("not positive definite"), "{e}");
    // A degenerate batch, as a Barlow Twins column of zero variance: a run stops as such.
    assert!(matches!(err, mixbt::Error::ZeroVariance(_)), "{err:?}");
    assert!(whiten(&small, 0.1).is_ok());
}

/// The inverse-Cholesky op's backward against central finite differences of a scalar function
/// of whiten(x), in f64, at every entry of x.
#[test]
fn whitening_backward_by_finite_differences() {
    let (n, d) = (9usize, 4usize);
    let xs: Vec<f64> = (0..n * d).map(|i| (i as f64 * 0.7).sin() * 1.3 + (i % 5) as f64 * 0.2).collect();
    let w: Vec<f64> = (0..n * d).map(|i| (i as f64 * 1.1).cos()).collect();
    let wt = Tensor::from_vec(w, (n, d), &Device::Cpu).unwrap();
    let f = |v: &[f64]| -> f64 {
        let x = Tensor::from_vec(v.to_vec(), (n, d), &Device::Cpu).unwrap();
        (whiten(&x, 0.05).unwrap() * &wt).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let x = Var::from_tensor(&Tensor::from_vec(xs.clone(), (n, d), &Device::Cpu).unwrap()).unwrap();
    let g = (whiten(x.as_tensor(), 0.05).unwrap() * &wt).unwrap().sum_all().unwrap().backward().unwrap();
    let analytic = flat(g.get(&x).unwrap());
    let h = 1e-6;
    for i in 0..n * d {
        let (mut p, mut m) = (xs.clone(), xs.clone());
        p[i] += h;
        m[i] -= h;
        let numeric = (f(&p) - f(&m)) / (2.0 * h);
        assert!((numeric - analytic[i]).abs() < 1e-6 * numeric.abs().max(1.0), "entry {i}: numeric {numeric} vs analytic {}", analytic[i]);
    }
}
