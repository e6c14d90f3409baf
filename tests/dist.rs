//! Data-parallel training over MPI (feature `mpi`; needs Open MPI's or MPICH's `mpirun` on the
//! PATH): `mpirun -np 2 mixbt pretrain --preset quickstart --max-steps 20` against one process
//! drawing its mixing permutation in the same two blocks (`--mix-groups 2`): the same losses,
//! weights and k-NN; a rank that dies or hangs ends the job with a clear error; checkpoints move
//! between 1 and 2 ranks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mixbt::candle_core::{Device, Tensor};

const STEPS: &str = "20";

fn mixbt_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mixbt")
}

/// `mpirun -np <np> mixbt <args>` (as root too; no core binding, so that two ranks share the
/// two cores of a small machine).
fn mpirun(np: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &np.to_string(), "--oversubscribe", "--bind-to", "none"]);
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    // Containers often forbid the cross-process memory attach Open MPI tries first.
    c.env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    c.arg(mixbt_bin()).args(args);
    c
}

fn single(args: &[&str]) -> Command {
    let mut c = Command::new(mixbt_bin());
    c.args(args);
    c
}

/// Run `c` to its end, killing it after `limit` (then the test fails: a job must not hang).
fn run(mut c: Command, limit: Duration) -> Output {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the command");
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("still running after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ok(c: Command) -> Output {
    let out = run(c, Duration::from_secs(600));
    assert!(out.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    out
}

fn pretrain_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["pretrain", "--preset", "quickstart", "--no-progress", "--skip-random-init-knn", "--out", out];
    v.extend_from_slice(extra);
    v
}

/// `(step, loss)` of a run's history.csv.
fn losses(dir: &Path) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(dir.join("history.csv")).expect("history.csv");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (si, li) = (head.iter().position(|h| *h == "step").unwrap(), head.iter().position(|h| *h == "loss").unwrap());
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[si].parse().unwrap(), f[li].parse().unwrap())
        })
        .collect()
}

fn weights(dir: &Path) -> BTreeMap<String, Tensor> {
    mixbt::io::read_safetensors(&dir.join("model.safetensors"), &Device::Cpu).expect("model.safetensors")
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// The largest relative difference of the losses (both histories have the same steps).
fn loss_gap(a: &[(usize, f64)], b: &[(usize, f64)]) -> f64 {
    assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), b.iter().map(|x| x.0).collect::<Vec<_>>(), "the same steps");
    a.iter().zip(b).map(|(x, y)| (x.1 - y.1).abs() / y.1.abs().max(1e-12)).fold(0.0, f64::max)
}

/// How far two models are apart as `torch.allclose` measures it: the largest
/// `|a − b| / (atol + rtol·|b|)` over every weight (≤ 1 is allclose), with rtol = 1e-4 and
/// atol = 1e-6 (batch-norm biases start at 0 and stay near it over 20 small steps, where a
/// relative measure alone would read rounding as a gap); with the worst tensor's name.
fn weight_gap(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> (f64, String) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = (0.0, String::new());
    for (k, ta) in a {
        let to = |t: &Tensor| t.to_dtype(mixbt::candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let (va, vb) = (to(ta), to(&b[k]));
        let d = va.iter().zip(&vb).map(|(x, y)| (x - y).abs() / (1e-6 + 1e-4 * y.abs())).fold(0.0, f64::max);
        if d > worst.0 {
            worst = (d, k.clone());
        }
    }
    worst
}

/// The done-when command itself: `mpirun -np 2 mixbt pretrain --preset quickstart --max-steps
/// 20` against one process. At quickstart's learning rate these 20 steps amplify float rounding:
/// one process against itself with its GEMM's sums in another (equally exact) order
/// (`MIXBT_GEMM_FALLBACK=1`) departs by ~1e-2 by step 20, so the steps before that departure
/// are held to 1e-4 and the rest is compared with the same process's own departure.
#[test]
fn two_ranks_follow_one_process_at_quickstarts_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (one, reordered, two) = (p("one"), p("reordered"), p("two"));
    ok(single(&pretrain_args(&one, &["--max-steps", STEPS, "--mix-groups", "2"])));
    let mut c = single(&pretrain_args(&reordered, &["--max-steps", STEPS, "--mix-groups", "2"]));
    c.env("MIXBT_GEMM_FALLBACK", "1");
    ok(c);
    let out = ok(mpirun(2, &pretrain_args(&two, &["--max-steps", STEPS])));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data-parallel: 2 ranks (mpi)"), "{err}");
    // Rank 0 alone reports.
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("k-NN top-1").count(), 1);
    let (l1, lr, l2) = (losses(Path::new(&one)), losses(Path::new(&reordered)), losses(Path::new(&two)));
    assert_eq!(l1.len(), 20);
    let early = loss_gap(&l2[..6], &l1[..6]);
    let (gap, own) = (loss_gap(&l2, &l1), loss_gap(&lr, &l1));
    eprintln!("quickstart, 20 steps: 2 ranks vs 1 process {gap:.1e} (steps 1-6: {early:.1e}); 1 process vs itself reordered {own:.1e}");
    assert!(early < 1e-4, "steps 1-6: loss gap {early}");
    assert!(gap < 1e-4_f64.max(3.0 * own), "2 ranks depart by {gap}, more than 3x the process's own {own}");
}

/// At a learning rate where 20 steps do not amplify rounding (quickstart with `--lr 1e-4`: one
/// process against itself reordered stays within 2e-6), 2 ranks give the losses of one process
/// within 1e-4 on every step, the same weights (allclose, rtol 1e-4) and the same k-NN; checkpoints move
/// between 1 and 2 ranks; and SGD, which keeps the gradient's scale, shows it summed over ranks
/// (`--grad-reduce sum`) or averaged as DDP does (`mean-as-ddp`: half the step on 2 ranks).
#[test]
fn two_ranks_train_as_one_process_and_checkpoints_move_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (one, two) = (p("one"), p("two"));
    let slow = ["--lr", "1e-4"];
    ok(single(&pretrain_args(&one, &[&["--max-steps", STEPS, "--mix-groups", "2"][..], &slow].concat())));
    ok(mpirun(2, &pretrain_args(&two, &[&["--max-steps", STEPS][..], &slow].concat())));
    let (l1, l2) = (losses(Path::new(&one)), losses(Path::new(&two)));
    assert_eq!(l1.len(), 20);
    assert!(l1.first().unwrap().1 != l1.last().unwrap().1, "the run must move");
    let gap = loss_gap(&l2, &l1);
    eprintln!("2 ranks vs 1 process: largest relative loss gap over 20 steps {gap:.2e}");
    assert!(gap < 1e-4, "loss gap {gap}");
    let (wg, name) = weight_gap(&weights(Path::new(&two)), &weights(Path::new(&one)));
    eprintln!("weights: largest |a - b| / (1e-6 + 1e-4 |b|) {wg:.2} ({name}); allclose at <= 1");
    assert!(wg <= 1.0, "weights not allclose(rtol 1e-4, atol 1e-6): {wg} in {name}");
    let (s1, s2) = (summary(Path::new(&one)), summary(Path::new(&two)));
    let (k1, k2) = (s1["knn_top1"].as_f64().unwrap(), s2["knn_top1"].as_f64().unwrap());
    eprintln!("k-NN top-1: 1 process {k1}, 2 ranks {k2}");
    assert!((k1 - k2).abs() <= 0.1 + 1e-9, "k-NN {k1} vs {k2} (1,000 test images: at most one may differ)");

    // A 2-rank checkpoint at step 10 resumed by one process, and the other way round, reach
    // the 20-step run above.
    let (h2, h1) = (p("half-two"), p("half-one"));
    ok(mpirun(2, &pretrain_args(&h2, &[&["--max-steps", "10"][..], &slow].concat())));
    ok(single(&["pretrain", "--resume", &h2, "--max-steps", STEPS, "--mix-groups", "2", "--no-progress"]));
    let gap = loss_gap(&losses(Path::new(&h2)), &l1);
    eprintln!("2 ranks to step 10, then 1 process: loss gap {gap:.2e}");
    assert!(gap < 1e-4, "2→1 resume: loss gap {gap}");
    ok(single(&pretrain_args(&h1, &[&["--max-steps", "10", "--mix-groups", "2"][..], &slow].concat())));
    ok(mpirun(2, &["pretrain", "--resume", &h1, "--max-steps", STEPS, "--no-progress"]));
    let gap = loss_gap(&losses(Path::new(&h1)), &l1);
    eprintln!("1 process to step 10, then 2 ranks: loss gap {gap:.2e}");
    assert!(gap < 1e-4, "1→2 resume: loss gap {gap}");
    let (wg, name) = weight_gap(&weights(Path::new(&h1)), &weights(Path::new(&one)));
    assert!(wg <= 1.0, "1→2 resume: weights not allclose: {wg} in {name}");

    // SGD: the step is proportional to the gradient. Step 1 runs at lr 0 (warm-up), step 2 moves.
    let sgd = dir.path().join("sgd.json");
    let mut r: serde_json::Value = serde_json::to_value(mixbt::train::presets::quickstart()).unwrap();
    r["optimizer"] = serde_json::json!({"kind": "sgd", "lr": 0.002, "momentum": 0.9, "weight_decay": 0.0});
    std::fs::write(&sgd, serde_json::to_string(&r).unwrap()).unwrap();
    let sgd = sgd.display().to_string();
    let run_sgd = |name: &str, ranks: usize, steps: &str, extra: &[&str]| -> BTreeMap<String, Tensor> {
        let out = p(name);
        let mut a = vec!["pretrain", "--recipe", &sgd, "--no-progress", "--skip-random-init-knn", "--out", &out, "--max-steps", steps];
        a.extend_from_slice(extra);
        ok(if ranks == 1 { single(&a) } else { mpirun(ranks, &a) });
        weights(Path::new(&out))
    };
    let w0 = run_sgd("sgd-0", 1, "1", &["--mix-groups", "2"]);
    let w1 = run_sgd("sgd-1", 1, "2", &["--mix-groups", "2"]);
    let w2 = run_sgd("sgd-2", 2, "2", &[]);
    let w2m = run_sgd("sgd-2-mean", 2, "2", &["--grad-reduce", "mean-as-ddp"]);
    let delta = |w: &BTreeMap<String, Tensor>| -> Vec<f64> {
        let key = "f.0.weight";
        let to = |t: &Tensor| t.to_dtype(mixbt::candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        to(&w[key]).iter().zip(to(&w0[key])).map(|(a, b)| a - b).collect()
    };
    let (d1, d2, d2m) = (delta(&w1), delta(&w2), delta(&w2m));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let diff = |a: &[f64], b: &[f64]| norm(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>()) / norm(b);
    eprintln!("SGD step of the first convolution: 2 ranks (sum) vs 1 process {:.1e}; mean-as-ddp / sum {:.3}", diff(&d2, &d1), norm(&d2m) / norm(&d1));
    assert!(norm(&d1) > 0.0);
    assert!(diff(&d2, &d1) < 1e-3, "summed gradients: the one-process step");
    assert!((norm(&d2m) / norm(&d1) - 0.5).abs() < 0.01, "mean-as-ddp: half the step on 2 ranks");
}

/// `--loss-stats per-rank` (main_imagenet.py's per-GPU standardisation): 2 ranks against one
/// process standardising in the same 2 blocks, and not the global-statistics run.
#[test]
fn per_rank_statistics_match_one_process_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let (one, two, global) = (p("one"), p("two"), p("global"));
    let common = ["--max-steps", "10", "--lr", "1e-4"];
    ok(single(&pretrain_args(&one, &[&common[..], &["--mix-groups", "2", "--loss-stats", "per-rank"]].concat())));
    ok(mpirun(2, &pretrain_args(&two, &[&common[..], &["--loss-stats", "per-rank"]].concat())));
    ok(mpirun(2, &pretrain_args(&global, &common)));
    let (l1, l2, lg) = (losses(Path::new(&one)), losses(Path::new(&two)), losses(Path::new(&global)));
    let gap = loss_gap(&l2, &l1);
    eprintln!("per-rank statistics, 2 ranks vs 1 process in 2 blocks: loss gap {gap:.1e}; vs global statistics {:.1e}", loss_gap(&l2, &lg));
    assert!(gap < 1e-4, "loss gap {gap}");
    assert!(loss_gap(&l2, &lg) > 1e-3, "per-rank statistics must change the loss");
}

#[test]
fn a_rank_that_dies_or_hangs_ends_the_job_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("dies").display().to_string();
    let mut c = mpirun(2, &pretrain_args(&out_dir, &["--max-steps", STEPS]));
    c.env("MIXBT_DIST_FAULT", "exit:1:5");
    let t0 = Instant::now();
    let out = run(c, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a job with a dead rank must fail");
    assert!(err.contains("rank 1: exiting at step 5"), "{err}");
    eprintln!("a dead rank ended the job in {:.1} s", t0.elapsed().as_secs_f64());

    let out_dir = dir.path().join("hangs").display().to_string();
    let mut c = mpirun(2, &pretrain_args(&out_dir, &["--max-steps", STEPS]));
    c.env("MIXBT_DIST_FAULT", "hang:1:5").env("MIXBT_DIST_TIMEOUT", "20");
    let t0 = Instant::now();
    let out = run(c, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a job with a hung rank must fail");
    assert!(err.contains("rank 0:") && err.contains("a rank died or hangs") && err.contains("at step 5"), "{err}");
    eprintln!("a hung rank ended the job in {:.1} s (time-out 20 s)", t0.elapsed().as_secs_f64());
}

#[test]
fn other_commands_refuse_to_run_once_per_rank() {
    let out = run(mpirun(2, &["presets"]), Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("only `mixbt pretrain` trains data-parallel"), "{err}");
}

#[test]
fn an_mpi_launch_of_a_batch_that_does_not_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("odd").display().to_string();
    let out = run(mpirun(2, &pretrain_args(&out_dir, &["--max-steps", "2", "--batch-size", "63"])), Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("63") && err.contains("2 ranks"), "{err}");
}
