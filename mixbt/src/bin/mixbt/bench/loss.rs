//! `mixbt bench loss`: the Mixed Barlow Twins loss (forward and backward) at several d, in Gram
//! form and in the reference d×d form, next to the original PyTorch loss (`bench/torch_loss.py`).

use candle_core::{DType, Device, Tensor, Var};
use mixbt::loss::{MixVariant, MixedBarlowTwins};
use mixbt::{Error, Result};

use super::timing;

/// Median seconds of `runs` calls of `f` after one warm-up call.
fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = vec![];
    for _ in 0..runs {
        let t0 = std::time::Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    Ok(timing::median(&t))
}

pub fn run(dims: &[usize], batch: usize, runs: usize, no_torch: bool) -> Result<()> {
    if batch < 2 || runs == 0 || dims.is_empty() {
        return Err(Error::Config(format!("bench loss: --batch at least 2 (got {batch}), --runs at least 1 (got {runs}), one d at least")));
    }
    let dev = Device::Cpu;
    let loss = MixedBarlowTwins { lambda_bt: 0.0078125, lambda_reg: 4.0, variant: MixVariant::Small, l2_normalize: true };
    let (perm, alpha) = mixbt::loss::sample_mix(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0), batch);
    let mut rows = vec![];
    for &d in dims {
        let vars: Vec<Var> = (0..3).map(|_| Var::from_tensor(&Tensor::randn(0f32, 1.0, (batch, d), &dev)?)).collect::<candle_core::Result<_>>()?;
        let (a, b, m) = (vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor());
        let gram = time(runs, || {
            let p = loss.compute_gram(a, b, m, &perm, alpha)?;
            p.total.backward()?;
            Ok(())
        })?;
        // The d×d form holds ~96 d×d f32 matrices with its gradients: run it only where they fit.
        let need = 96 * (d as u128) * (d as u128) * 4;
        let matrices = if mixbt::train::recipe::available_memory().is_none_or(|a| need < a as u128 * 3 / 4) {
            Some(time(runs, || {
                let (p, _) = loss.compute_with_matrices(a, b, m, &perm, alpha)?;
                p.total.backward()?;
                Ok(())
            })?)
        } else {
            eprintln!("d = {d}: the d×d form would need ~{:.1} GiB; not run", need as f64 / (1u64 << 30) as f64);
            None
        };
        // Each form's f32 total against the Gram form in f64 (relative error).
        let total = |p: Tensor| -> Result<f64> { Ok(p.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let f64s: Vec<Tensor> = [a, b, m].iter().map(|t| t.to_dtype(DType::F64)).collect::<candle_core::Result<_>>()?;
        let exact = total(loss.compute_gram(&f64s[0], &f64s[1], &f64s[2], &perm, alpha)?.total)?;
        let err = |x: f64| ((x - exact) / exact).abs();
        let gram_err = err(total(loss.compute_gram(a, b, m, &perm, alpha)?.total)?);
        let mat_err = if matrices.is_some() { Some(err(total(loss.compute_with_matrices(a, b, m, &perm, alpha)?.0.total)?)) } else { None };
        eprintln!("d = {d}: gram {gram:.4} s, d×d {}", matrices.map(|s| format!("{s:.4} s")).unwrap_or("-".into()));
        rows.push((d, gram, matrices, gram_err, mat_err));
    }
    let py = timing::python();
    let mut torch: Vec<Option<(f64, f64)>> = vec![None; dims.len()];
    if no_torch {
    } else if !timing::python_has(&py, "torch, numpy") {
        eprintln!("({py} cannot import torch: PyTorch side skipped; set MIXBT_PYTHON to a Python with torch)");
    } else {
        let threads = rayon::current_num_threads();
        let args: Vec<String> = vec![
            "--dims".into(),
            dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
            "--batch".into(),
            batch.to_string(),
            "--runs".into(),
            runs.to_string(),
            "--threads".into(),
            threads.to_string(),
        ];
        for v in timing::run_python(&timing::bench_dir().join("torch_loss.py"), &args)? {
            if let (Some(d), Some(s), Some(rss)) = (v["d"].as_u64(), v["median_s"].as_f64(), v["max_rss_mib"].as_f64()) {
                if let Some(i) = dims.iter().position(|&x| x as u64 == d) {
                    torch[i] = Some((s, rss));
                }
            }
        }
    }
    println!("Mixed Barlow Twins loss, forward + backward, batch {batch}, f32, {} threads, median of {runs}", rayon::current_num_threads());
    println!("{:>6} {:>10} {:>10} {:>10} {:>9} {:>10} {:>10} {:>9} {:>9}", "d", "gram s", "d×d s", "torch s", "d×d/gram", "torch/gram", "torch MiB", "gram err", "d×d err");
    for ((d, gram, mat, gram_err, mat_err), t) in rows.iter().zip(&torch) {
        let f = |x: Option<f64>, p: usize| x.map(|v| format!("{v:.p$}")).unwrap_or("-".into());
        let e = |x: Option<f64>| x.map(|v| format!("{v:.1e}")).unwrap_or("-".into());
        println!(
            "{:>6} {:>10.4} {:>10} {:>10} {:>9} {:>10} {:>10} {:>9} {:>9}",
            d,
            gram,
            f(*mat, 4),
            f(t.map(|t| t.0), 4),
            f(mat.map(|m| m / gram), 2),
            f(t.map(|t| t.0 / gram), 2),
            f(t.map(|t| t.1), 0),
            e(Some(*gram_err)),
            e(*mat_err)
        );
    }
    println!("(gram: mixbt's Gram form, no d×d matrix; d×d: mixbt's reference form, as the original; torch: main.py's loss; ratios > 1: the Gram form is faster; torch MiB: the PyTorch process's peak RSS so far; err: the f32 total's relative error against the Gram form in f64)");
    Ok(())
}
