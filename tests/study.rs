//! `mixbt study overfitting` on a tiny grid: every run trains, an interrupted run resumes from
//! its checkpoint, the tables hold what the runs measured, and the verdict is computed from
//! the numbers (checked on made-up curves whose answer is known).

mod common;

use mixbt::eval::LinearProbeConfig;
use mixbt::train::study::{read_study, verdict, OverfittingStudy, RunResult, StudyRun};
use mixbt::train::PretrainOptions;

fn study(work: &std::path::Path, out: &std::path::Path) -> OverfittingStudy {
    let mut recipe = common::tiny_recipe(64, 2);
    recipe.knn_every_epochs = 1;
    OverfittingStudy {
        recipe,
        methods: vec!["bt".into(), "mixbt".into()],
        dims: vec![16, 32],
        seeds: vec![3],
        work_dir: work.to_path_buf(),
        out_dir: out.to_path_buf(),
        linear: Some(LinearProbeConfig { epochs: 2, batch_size: 32, augment: false, ..LinearProbeConfig::small() }),
        opts: PretrainOptions { progress: false, workers: 1, ..Default::default() },
    }
}

const CHILD: &str = "MIXBT_STUDY_CHILD";

/// The second run of the tiny study, in a process the test kills.
#[test]
#[ignore = "a child process of a_tiny_study_runs_resumes_and_writes_its_tables"]
fn study_child() {
    let Ok(dirs) = std::env::var(CHILD) else { return };
    let (work, out) = dirs.split_once('|').unwrap();
    let s = study(std::path::Path::new(work), std::path::Path::new(out));
    s.run_one(&s.runs()[1]).unwrap();
}

fn csv(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

#[test]
fn a_tiny_study_runs_resumes_and_writes_its_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, out) = (tmp.path().join("work"), tmp.path().join("results"));
    let s = study(&work, &out);
    let runs = s.runs();
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["bt-d16-s3", "mixbt-d16-s3", "bt-d32-s3", "mixbt-d32-s3"]);
    // Each arm: the study's recipe with its λ_reg and d.
    let bt = s.recipe_for(&runs[0]).unwrap();
    let mix = s.recipe_for(&runs[3]).unwrap();
    assert_eq!((bt.lambda_reg(), bt.encoder.out_dim()), (Some(0.0), 16));
    assert_eq!((mix.lambda_reg(), mix.encoder.out_dim()), (Some(4.0), 32));

    // The first run, then the second in a process killed after its first checkpoint.
    s.run_one(&runs[0]).unwrap();
    assert!(s.is_done(&runs[0]));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "study_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD, format!("{}|{}", work.display(), out.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let latest = s.run_dir(&runs[1]).join("checkpoints/latest");
    let t0 = std::time::Instant::now();
    while !latest.exists() {
        assert!(t0.elapsed().as_secs() < 120, "the child wrote no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!s.is_done(&runs[1]), "killed before the end of its run");
    let (v, _) = s.write_results(&serde_json::json!({"command": "test"})).unwrap();
    assert!(v.starts_with("1 of 4 planned runs finished"), "{v}");
    // The rest: the second run continues from step 5 (its history has 8 steps, not 13).
    for r in &runs[1..] {
        s.run_one(r).unwrap();
    }
    let h = csv(&s.run_dir(&runs[1]).join("history.csv"));
    assert_eq!(h.len(), 1 + 8);
    // Resumed bit-exactly: the same model as the run made in one go.
    let whole = study(&tmp.path().join("work2"), &tmp.path().join("results2"));
    whole.run_one(&runs[1]).unwrap();
    let model = |st: &OverfittingStudy| std::fs::read(st.run_dir(&runs[1]).join("model.safetensors")).unwrap();
    assert!(model(&s) == model(&whole), "the resumed run ends where the uninterrupted one does");
    let (v, _) = s.write_results(&serde_json::json!({"command": "test", "dims": [16, 32], "seeds": [3], "recipe": s.recipe})).unwrap();
    assert!(v.starts_with("4 of 4 planned runs finished"), "{v}");
    // The stored tables alone give back the results, the plan, the recipe and the verdict.
    let stored = read_study(&out).unwrap();
    assert_eq!(stored.verdict(), v);
    assert_eq!(stored.planned, s.runs());
    assert_eq!(stored.dims(), [16, 32]);
    assert_eq!(stored.recipe().unwrap(), s.recipe);
    for (a, b) in stored.results.iter().zip(s.results().unwrap()) {
        assert_eq!((&a.run, a.epochs, a.peak_epoch, a.linear_top1), (&b.run, b.epochs, b.peak_epoch, b.linear_top1));
        assert_eq!((a.knn_random_init, a.knn_peak, a.knn_final), (b.knn_random_init, b.knn_peak, b.knn_final));
        assert_eq!(a.knn.iter().map(|k| (k.0, k.1)).collect::<Vec<_>>(), b.knn.iter().map(|k| (k.0, k.1)).collect::<Vec<_>>());
        // Every run names the CPU that trained it, and the stored table keeps it.
        assert_eq!(b.cpu, mixbt::train::study::cpu_label());
        assert_eq!(a.cpu, b.cpu);
    }
    for d in [16, 32] {
        assert!(v.contains(&format!("Barlow Twins (d = {d})")) && v.contains(&format!("d = {d}, final k-NN of Mixed BT − BT by seed: seed 3:")), "{v}");
    }
    assert!(v.contains("\nVerdict: "), "{v}");
    assert_eq!(std::fs::read_to_string(out.join("verdict.md")).unwrap(), v);

    // knn.csv: epochs 0 (random init), 1 and 2 of every run, as the run's history has them.
    let knn = csv(&out.join("knn.csv"));
    assert_eq!(knn[0], ["run", "method", "d", "seed", "epoch", "knn_top1", "knn_top5"]);
    assert_eq!(knn.len(), 1 + 4 * 3);
    let results = s.results().unwrap();
    for r in &results {
        let rows: Vec<&Vec<String>> = knn.iter().filter(|row| row[0] == r.run.name).collect();
        assert_eq!(rows.iter().map(|x| x[4].as_str()).collect::<Vec<_>>(), ["0", "1", "2"], "{}", r.run.name);
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(s.run_dir(&r.run).join("summary.json")).unwrap()).unwrap();
        assert_eq!(rows[2][5].parse::<f64>().unwrap(), summary["knn_top1"].as_f64().unwrap());
        assert_eq!(rows[0][5].parse::<f64>().unwrap(), summary["knn_top1_random_init"].as_f64().unwrap());
        assert!(r.linear_top1.is_some_and(|x| (0.0..=100.0).contains(&x)), "{}: a linear probe", r.run.name);
        assert!(r.wall_seconds > 0.0);
        assert!(out.join("epochs").join(format!("{}.csv", r.run.name)).is_file());
    }
    // Both arms of one seed and d start from the same network.
    assert_eq!(results[0].knn_random_init, results[1].knn_random_init);
    let runs_csv = csv(&out.join("runs.csv"));
    assert_eq!(runs_csv.len(), 5);
    assert!(runs_csv[0].contains(&"drop_from_peak".to_string()) && runs_csv[0].contains(&"linear_top1".to_string()));
    let cpu_col = runs_csv[0].iter().position(|c| c == "cpu").expect("a cpu column");
    assert!(runs_csv[1][cpu_col].contains("core"), "{:?}", runs_csv[1]);
    let epochs = csv(&out.join("epochs/mixbt-d32-s3.csv"));
    assert_eq!(epochs.len(), 3, "one row per epoch");
    assert!(epochs[0].contains(&"loss_reg".to_string()) && epochs[0].contains(&"knn_top1".to_string()));

    // A reworded description is not a change of settings: the run continues.
    let mut reworded = study(&work, &out);
    reworded.recipe.description = "the same recipe, described anew".into();
    std::fs::remove_file(s.run_dir(&runs[3]).join("summary.json")).unwrap();
    reworded.run_one(&runs[3]).unwrap();
    assert!(s.run_dir(&runs[3]).join("summary.json").is_file());

    // A study whose settings changed between sittings refuses to mix the runs.
    let mut other = study(&work, &out);
    other.recipe.batch_size = 8;
    std::fs::remove_file(s.run_dir(&runs[3]).join("summary.json")).unwrap();
    let e = other.run_one(&runs[3]).unwrap_err().to_string();
    assert!(e.contains("another recipe"), "{e}");

    // Stored tables that do not add up: errors that name the file.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["runs.csv", "knn.csv", "study.json"] {
        std::fs::copy(out.join(f), bad.join(f)).unwrap();
    }
    std::fs::write(bad.join("knn.csv"), "run,method,d,seed,epoch,knn_top1,knn_top5\n").unwrap();
    let e = read_study(&bad).unwrap_err().to_string();
    assert!(e.contains("knn.csv") && e.contains("no k-NN rows"), "{e}");
    std::fs::write(bad.join("study.json"), "{\"dims\": [16]}").unwrap();
    let e = read_study(&bad).unwrap_err().to_string();
    assert!(e.contains("study.json") && e.contains("seeds"), "{e}");
    std::fs::remove_file(bad.join("runs.csv")).unwrap();
    std::fs::write(bad.join("study.json"), "{\"dims\": [16], \"seeds\": [3]}").unwrap();
    let e = read_study(&bad).unwrap_err().to_string();
    assert!(e.contains("runs.csv"), "{e}");

    // The tables outlive the run folders: with the folders gone nothing is left to train, the
    // results are the stored ones, and writing the tables again changes nothing.
    let meta = serde_json::json!({"command": "test", "dims": [16, 32], "seeds": [3], "recipe": s.recipe});
    s.write_results(&meta).unwrap();
    let tables = || ["runs.csv", "knn.csv", "verdict.md", "epochs/bt-d16-s3.csv"].map(|f| std::fs::read_to_string(out.join(f)).unwrap());
    let before = tables();
    std::fs::remove_dir_all(&work).unwrap();
    assert!(s.pending().unwrap().is_empty(), "every run is stored");
    assert_eq!(s.results().unwrap().len(), 4);
    s.write_results(&meta).unwrap();
    assert_eq!(tables(), before);
    // A stored run missing from the tables is still to train.
    let runs_csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let kept: Vec<&str> = runs_csv.lines().filter(|l| !l.starts_with("mixbt-d32-s3,")).collect();
    std::fs::write(out.join("runs.csv"), kept.join("\n") + "\n").unwrap();
    assert_eq!(s.pending().unwrap(), [runs[3].clone()]);
    // Tables of another recipe are not overwritten.
    let e = other.pending().unwrap_err().to_string();
    assert!(e.contains("study.json") && e.contains("another recipe"), "{e}");
    // Tables of the same recipe, reworded, are continued.
    assert_eq!(reworded.pending().unwrap(), [runs[3].clone()]);
}

fn result(method: &str, seed: u64, curve: &[f64]) -> RunResult {
    let knn: Vec<(usize, f64, f64)> = curve.iter().enumerate().map(|(e, &k)| (e * 10, k, 90.0)).collect();
    let (peak_epoch, knn_peak) = knn.iter().skip(1).fold((0, f64::NEG_INFINITY), |b, &(e, k, _)| if k > b.1 { (e, k) } else { b });
    RunResult {
        run: StudyRun { name: format!("{method}-d1024-s{seed}"), method: method.into(), d: 1024, seed },
        knn_random_init: curve[0],
        knn_peak,
        peak_epoch,
        knn_final: *curve.last().unwrap(),
        epochs: (curve.len() - 1) * 10,
        linear_top1: None,
        wall_seconds: 1.0,
        cpu: String::new(),
        knn,
        stopped: None,
    }
}

#[test]
fn the_verdict_reads_the_curves() {
    // Barlow Twins peaks at epoch 20 and falls 4 points on two seeds; Mixed BT keeps rising.
    let res = vec![
        result("bt", 0, &[30.0, 50.0, 56.0, 54.0, 52.0]),
        result("mixbt", 0, &[30.0, 49.0, 55.0, 57.0, 58.0]),
        result("bt", 1, &[31.0, 51.0, 57.0, 55.0, 53.0]),
        result("mixbt", 1, &[31.0, 50.0, 54.0, 56.0, 57.5]),
        result("bt", 2, &[29.0, 50.0, 55.0, 55.5, 55.2]),
    ];
    assert!(res[0].fell() && !res[1].fell() && !res[4].fell());
    let planned: Vec<StudyRun> = res.iter().map(|r| r.run.clone()).collect();
    let v = verdict(&res, &planned);
    assert!(v.contains("Barlow Twins (d = 1024): k-NN peaked and fell on 2 of 3 seeds"), "{v}");
    assert!(v.contains("Mixed Barlow Twins (d = 1024): k-NN peaked and fell on 0 of 2 seeds"), "{v}");
    assert!(v.contains("seed 0: +6.00, seed 1: +4.50 (Mixed BT ahead on 2 of 2"), "{v}");
    assert!(v.contains("Verdict: Barlow Twins' k-NN fell from its peak in 2 of 3 runs, Mixed Barlow Twins' in 0 of 2. Barlow Twins fell more often, as the paper reports."), "{v}");
    // Nothing bends: said so.
    let flat = vec![result("bt", 0, &[30.0, 40.0, 45.0]), result("mixbt", 0, &[30.0, 41.0, 44.5])];
    let v = verdict(&flat, &planned);
    assert!(v.contains("Neither curve bent at this budget"), "{v}");
}

#[test]
fn a_methods_study_names_every_method_and_spreads_its_seeds() {
    use mixbt::train::study::{planned_runs, ALL_METHODS};
    let planned = planned_runs(&ALL_METHODS, &[1024], &[0, 1]);
    assert_eq!(planned.len(), 10);
    assert_eq!(planned[2].name, "simclr-d1024-s0", "seed-major, methods in their order");
    let mut res = vec![
        result("simclr", 0, &[30.0, 40.0, 44.0]),
        result("simclr", 1, &[31.0, 42.0, 47.0]),
        result("wmse", 0, &[30.0, 35.0, 38.0]),
    ];
    res[0].linear_top1 = Some(50.0);
    res[1].linear_top1 = Some(52.0);
    let v = verdict(&res, &planned);
    assert!(v.contains("3 of 10 planned runs finished"), "{v}");
    assert!(v.contains("- SimCLR (d = 1024): k-NN peaked and fell on 0 of 2 seeds"), "{v}");
    assert!(v.contains("mean final 45.50 % (seeds from 44.00 to 47.00;"), "{v}");
    assert!(v.contains("; linear probe 51.00 % on average."), "{v}");
    assert!(v.contains("- W-MSE (d = 1024)"), "{v}");
    assert!(!v.contains("Verdict:"), "no Barlow Twins pair finished: no overfitting verdict\n{v}");
}

#[test]
fn each_method_at_its_own_d_when_no_dims_are_given() {
    use mixbt::train::study::plan;
    let recipe = common::tiny_recipe(64, 2);
    let bt_d = *recipe.encoder.projector.sizes.last().unwrap();
    let methods: Vec<String> = ["mixbt", "wmse"].iter().map(|m| m.to_string()).collect();
    let p = plan(&recipe, &methods, &[], &[5]).unwrap();
    let names: Vec<&str> = p.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [format!("mixbt-d{bt_d}-s5").as_str(), "wmse-d64-s5"]);
    let e = plan(&recipe, &["nope".to_string()], &[], &[0]).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

/// A run whose training stops on its numbers (here a learning rate of 1e30: the loss stops being
/// finite within a few steps) is recorded as stopped, is not tried again, and the study goes on
/// to the next run; the tables carry why, and the verdict names each stopped run and leaves it
/// out of every figure.
#[test]
fn a_run_that_stops_is_recorded_and_the_study_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, out) = (tmp.path().join("work"), tmp.path().join("results"));
    let mut s = study(&work, &out);
    s.dims = vec![16];
    s.linear = None;
    s.recipe.optimizer.set_base_lr(1e30);
    let runs = s.runs();
    for r in &runs {
        s.run_one(r).unwrap();
        let why = s.stopped(r).unwrap_or_else(|| panic!("{} is recorded as stopped", r.name));
        assert!(why.contains("training stopped at step"), "{why}");
        assert!(!why.contains("checkpoint"), "the record names no path of this machine: {why}");
        assert!(s.is_done(r));
    }
    assert!(s.pending().unwrap().is_empty());
    // Not tried again: the record stands.
    let before = std::fs::read(work.join(&runs[0].name).join("study.json")).unwrap();
    s.run_one(&runs[0]).unwrap();
    assert_eq!(std::fs::read(work.join(&runs[0].name).join("study.json")).unwrap(), before);
    let (v, res) = s.write_results(&serde_json::json!({"command": "test", "dims": [16], "seeds": [3], "methods": ["bt", "mixbt"], "recipe": s.recipe})).unwrap();
    assert_eq!(res.len(), 2);
    assert!(v.contains("2 of 2 planned runs finished (2 of them stopped before their last epoch"), "{v}");
    assert!(v.contains("- Barlow Twins (d = 16), seed 3: training stopped at step "), "{v}");
    assert!(v.contains("- Mixed Barlow Twins (d = 16), seed 3: training stopped at step "), "{v}");
    assert!(!v.contains("k-NN peaked") && !v.contains("Verdict:"), "a stopped run is in no figure\n{v}");
    let rows = csv(&out.join("runs.csv"));
    assert!(rows[0].iter().any(|c| c == "stopped"), "{:?}", rows[0]);
    assert!(rows[1].join(",").contains("training stopped at step"), "{:?}", rows[1]);
    let stored = read_study(&out).unwrap();
    assert!(stored.results.is_empty(), "a stopped run is not among the results a notebook draws");
    assert_eq!(stored.stopped.len(), 2);
    assert!(stored.stopped.iter().all(|r| r.stopped.as_deref().is_some_and(|m| m.contains("training stopped at step"))));
    assert_eq!(stored.verdict(), v);
}

/// The CPU presets' descriptions quote the study runs that measured them: each preset must be
/// that run's recipe (`cifar10-cpu-study` with the run's method and d), or the numbers it quotes
/// are not its own.
#[test]
fn the_one_hour_presets_are_the_study_runs_they_quote() {
    use mixbt::train::presets;
    let s = OverfittingStudy {
        recipe: presets::get("cifar10-cpu-study").unwrap(),
        methods: vec!["bt".into(), "mixbt".into()],
        dims: vec![128, 1024],
        seeds: vec![0],
        work_dir: "unused".into(),
        out_dir: "unused".into(),
        linear: None,
        opts: PretrainOptions::default(),
    };
    // (preset, the run it quotes, the study's --epochs, its tables in the repository)
    for (preset, run, epochs, tables) in [("cifar10-cpu-1h-mixbt", "mixbt-d128-s0", 80, "overfitting-80"), ("cifar10-cpu-1h-bt", "bt-d1024-s0", 40, "overfitting")] {
        let mut p = presets::get(preset).unwrap();
        let run = s.runs().into_iter().find(|r| r.name == run).unwrap();
        let mut r = OverfittingStudy { recipe: mixbt::train::Recipe { epochs, ..s.recipe.clone() }, ..s.clone() }.recipe_for(&run).unwrap();
        assert!(p.description.contains(&format!("(results/{tables}, runs {}-d{}-s*)", run.method, run.d)), "{preset}: {}", p.description);
        // The numbers it quotes are those of the stored runs, seeds 0 to 2.
        let stored = read_study(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results").join(tables)).unwrap();
        assert_eq!(stored.recipe().unwrap().epochs, epochs, "results/{tables}");
        let quoted: Vec<&RunResult> = (0..3).map(|seed| stored.results.iter().find(|x| x.run.name == format!("{}-d{}-s{seed}", run.method, run.d)).expect("seeds 0-2 stored")).collect();
        let line = |f: &dyn Fn(&RunResult) -> String| quoted.iter().map(|x| f(x)).collect::<Vec<_>>().join(" / ");
        for want in [line(&|x| format!("{:.2}", x.knn_final)), line(&|x| format!("{:+.1}", x.gain())), line(&|x| format!("{:.2}", x.linear_top1.unwrap()))] {
            assert!(p.description.contains(&want), "{preset} should quote {want}: {}", p.description);
        }
        for x in [&mut p, &mut r] {
            x.name.clear();
            x.description.clear();
        }
        assert_eq!(p, r, "{preset} is not the recipe of the study run {}", run.name);
    }
}
