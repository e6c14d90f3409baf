//! Charts (colour bars, captions, spread plots) and the sweep API's parameter setting and
//! spread summary. `MIXBT_CHART_DIR=<dir>` also writes the charts there to look at.

use candle_core::{Device, Tensor};
use mixbt::report::{heatmap_svg, spread_svg, Svg};
use mixbt::train::sweep::{set_param, spread, spread_verdict, sweep_table, SweepRow};
use mixbt::train::presets;

fn keep(name: &str, svg: &Svg) {
    if let Ok(dir) = std::env::var("MIXBT_CHART_DIR") {
        svg.save(&std::path::Path::new(&dir).join(name)).unwrap();
    }
}

#[test]
fn heat_maps_have_a_colour_bar_and_captions_wrap() {
    let m = Tensor::from_vec((0..36).map(|i| (i as f32 - 18.0) / 18.0).collect::<Vec<_>>(), (6, 6), &Device::Cpu).unwrap();
    let svg = heatmap_svg("C", &m, -1.0, 1.0).unwrap();
    // The bar's tick labels span the scale.
    for tick in ["-1.0", "0.0", "1.0"] {
        assert!(svg.0.contains(&format!(">\n{tick}\n<")) || svg.0.contains(&format!(">{tick}<")), "colour bar lacks the tick {tick}");
    }
    let long = "Blue is −1, white 0, red +1. ".repeat(8);
    let c = svg.clone().caption(&long);
    assert_eq!(c.0.matches("<svg").count(), 2, "the chart is nested in the captioned one");
    assert_eq!(c.0.matches("</svg>").count(), 2);
    let lines = c.0.matches("font-size=\"12\" fill=\"#333333\"").count();
    assert!(lines >= 2, "a long caption wraps: {lines} lines");
    assert!(c.0.starts_with("<svg width=\"500\" height=\""), "{}", &c.0[..80]);
    assert!(!c.0.contains("−1, white 0, red +1. Blue is −1, white 0, red +1. Blue is −1, white 0, red +1. Blue is −1, white 0, red +1. Blue"));
    keep("heatmap.svg", &c);
}

#[test]
fn spread_chart_shows_seeds_means_and_the_baseline() {
    let cats: Vec<String> = ["0", "0.1", "1", "4"].iter().map(|s| s.to_string()).collect();
    let vals = vec![vec![40.0, 41.5, 39.0], vec![41.0, 42.0, 40.5], vec![42.5, 41.0, 43.0], vec![41.2, 40.8, 42.2]];
    let svg = spread_svg("k-NN by λ_reg", "λ_reg", "top-1 (%)", &cats, &vals, Some(("Barlow Twins (λ_reg = 0)", 40.17))).unwrap();
    for s in ["one seed (3)", "mean over seeds", "Barlow Twins (λ_reg = 0)", "40.17", "42.17", "0.1", "λ_reg (categories, evenly spaced)"] {
        assert!(svg.0.contains(s), "spread chart lacks `{s}`");
    }
    // The y axis fits the data (no tick at 0 for values around 40).
    assert!(!svg.0.contains(">\n0.0\n<") && !svg.0.contains(">0.0<"), "the y range should not start at zero");
    keep("spread.svg", &svg);
    // Methods are not a progression: nothing joins their means; chance and the random network
    // are drawn and labelled.
    let methods: Vec<String> = ["Mixed BT", "BT", "SimCLR"].iter().map(|s| s.to_string()).collect();
    let refs = mixbt::report::accuracy_references(10, Some(27.5));
    let svg = mixbt::report::spread_ref_svg("k-NN by method", "method", "top-1 (%)", &methods, &vals[..3], &refs, false).unwrap();
    for s in ["one seed (3)", "mean over seeds", "chance (10 %)", "random network (27.5 %)", "SimCLR", "method (categories, evenly spaced)"] {
        assert!(svg.0.contains(s), "method spread chart lacks `{s}`");
    }
    let means_line = svg.0.lines().filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\"") && l.matches(',').count() > 2).count();
    assert_eq!(means_line, 0, "no line may join the methods' means");
    keep("spread-methods.svg", &svg);
}

/// Legends sit beside the plot: every legend label is drawn right of the plotting area.
#[test]
fn legends_sit_beside_the_data() {
    let series = vec![("Mixed Barlow Twins".to_string(), vec![(0.0, 30.0), (1.0, 40.0), (2.0, 45.0)])];
    let refs = mixbt::report::accuracy_references(10, Some(27.5));
    assert_eq!(refs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["chance (10 %)", "random network (27.5 %)"]);
    let svg = mixbt::report::lines_ref_svg("k-NN", "epoch", "top-1 (%)", &series, false, &refs).unwrap().0;
    // The legend entry's text starts right of the 690-pixel plot panel.
    let x_of = |label: &str| -> f64 {
        let i = svg.find(&format!(">{label}<")).or_else(|| svg.find(&format!(">\n{label}\n<"))).unwrap_or_else(|| panic!("no `{label}` in {svg}"));
        let tag = &svg[svg[..i].rfind("<text").unwrap()..i];
        let x = tag.split("x=\"").nth(1).unwrap();
        x[..x.find('"').unwrap()].parse().unwrap()
    };
    assert!(x_of("Mixed Barlow Twins") > 690.0);
    assert!(x_of("reference") > 690.0);
    // Whole-number x values get whole-number ticks only.
    assert!(!svg.contains(">0.5<") && !svg.contains(">1.5<"), "{svg}");
    keep("lines-refs.svg", &mixbt::report::Svg(svg.clone()));
    assert!(svg.contains("chance (10 %)") && svg.contains("random network (27.5 %)"));
    // Tick labels are at least 11 px.
    for size in svg.split("font-size=\"").skip(1).map(|t| t[..t.find('"').unwrap()].parse::<f64>().unwrap()) {
        assert!(size >= 11.0, "a {size} px label");
    }
}

#[test]
fn sweep_parameters_and_spread() {
    let mut r = presets::quickstart();
    set_param(&mut r, "lambda_reg", 0.0).unwrap();
    let bt = r.barlow_twins().unwrap();
    assert!(!bt.is_mixup && bt.loss.lambda_reg == 0.0, "λ_reg 0 is plain Barlow Twins");
    set_param(&mut r, "lambda_reg", 2.0).unwrap();
    let bt = r.barlow_twins().unwrap();
    assert!(bt.is_mixup && bt.loss.lambda_reg == 2.0);
    set_param(&mut r, "d", 64.0).unwrap();
    assert_eq!(*r.encoder.projector.sizes.last().unwrap(), 64);
    set_param(&mut r, "loss.lambda_bt", 0.03125).unwrap();
    assert_eq!(r.barlow_twins().unwrap().loss.lambda_bt, 0.03125);
    set_param(&mut r, "method.loss.lambda_bt", 0.0625).unwrap();
    assert_eq!(r.barlow_twins().unwrap().loss.lambda_bt, 0.0625);
    // A method without λ_reg says so.
    let mut s = presets::get("quickstart-simclr").unwrap();
    assert!(set_param(&mut s, "lambda_reg", 1.0).unwrap_err().to_string().contains("simclr has no λ_reg"));
    set_param(&mut s, "method.tau", 0.2).unwrap();
    assert!(matches!(s.method, mixbt::method::MethodConfig::Simclr(ref c) if c.tau == 0.2));
    set_param(&mut r, "batch_size", 32.0).unwrap();
    assert_eq!(r.batch_size, 32);
    set_param(&mut r, "encoder.backbone.width", 0.25).unwrap();
    assert_eq!(r.encoder.backbone.width, 0.25);
    let e = set_param(&mut r, "batch_size", 32.5).unwrap_err().to_string();
    assert!(e.contains("batch_size") && e.contains("whole-number"), "{e}");
    let e = set_param(&mut r, "loss.nope", 1.0).unwrap_err().to_string();
    assert!(e.contains("loss.nope") && e.contains("not a recipe field"), "{e}");
    let e = set_param(&mut r, "d", 0.0).unwrap_err().to_string();
    assert!(e.contains("`d`"), "{e}");

    let row = |value, seed, t1| SweepRow { value, seed, knn_top1: t1, knn_top5: 90.0, knn_random_init: 30.0, final_loss: 1.0, seconds: 1.0 };
    let noisy = sweep_table("lambda_reg", &[row(0.0, 0, 40.0), row(0.0, 1, 44.0), row(4.0, 0, 41.0), row(4.0, 1, 42.0)]).unwrap();
    assert_eq!(noisy.get_column_names().iter().map(|s| s.to_string()).collect::<Vec<_>>(), ["param", "value", "seed", "knn_top1", "knn_top5", "knn_random_init", "gain", "final_loss", "seconds"]);
    assert_eq!(noisy.column("gain").unwrap().f64().unwrap().get(1), Some(14.0));
    assert_eq!(spread(&noisy, "knn_top1").unwrap(), vec![(0.0, 42.0, 40.0, 44.0), (4.0, 41.5, 41.0, 42.0)]);
    assert!(spread_verdict(&noisy, "knn_top1").unwrap().contains("within the seed-to-seed noise"));
    let clear = sweep_table("lambda_reg", &[row(0.0, 0, 40.0), row(0.0, 1, 40.5), row(4.0, 0, 45.0), row(4.0, 1, 45.2)]).unwrap();
    assert!(spread_verdict(&clear, "knn_top1").unwrap().contains("exceed the seed-to-seed noise"));
    // Paired by seed: seed 1 is better everywhere, but λ 4 beats λ 0 on both seeds.
    let paired = sweep_table("lambda_reg", &[row(0.0, 0, 40.0), row(0.0, 1, 44.0), row(4.0, 1, 44.5), row(4.0, 0, 40.25)]).unwrap();
    assert_eq!(mixbt::train::sweep::by_value(&paired, "knn_top1").unwrap(), vec![(0.0, vec![40.0, 44.0]), (4.0, vec![40.25, 44.5])], "runs in seed order");
    let v = mixbt::train::sweep::paired_verdict(&paired, "knn_top1", 0.0).unwrap();
    assert!(v.contains("4: +0.38 (+0.25 … +0.50, better on every seed)"), "{v}");
    assert!(mixbt::train::sweep::paired_verdict(&paired, "knn_top1", 2.0).is_err());
    let one = sweep_table("lambda_reg", &[row(0.0, 0, 40.0), row(4.0, 0, 45.0)]).unwrap();
    assert!(spread_verdict(&one, "knn_top1").unwrap().contains("One seed per value"));
}

/// The sweep itself on a tiny budget: one row per (value, seed), seeds give different runs,
/// the same seed the same run.
#[test]
fn sweep_runs_every_value_and_seed() {
    let mut r = presets::quickstart();
    r.encoder.backbone.width = 0.0625;
    r.encoder.projector = mixbt::model::ProjectorConfig::small_with_hidden(r.encoder.backbone.feature_dim(), 32, 32);
    r.data.builtin = Some(mixbt::data::BuiltinConfig { seed: 0, train_size: 64, test_size: 40, size: 32 });
    r.batch_size = 16;
    r.epochs = 1;
    r.knn.k = 10;
    r.knn_every_epochs = 0;
    let df = mixbt::train::sweep(&r, "lambda_reg", &[0.0, 4.0], &[0, 1]).unwrap();
    assert_eq!(df.height(), 4);
    let loss: Vec<f64> = df.column("final_loss").unwrap().f64().unwrap().iter().map(|v| v.unwrap()).collect();
    assert_ne!(loss[0], loss[1], "two seeds, two runs");
    // Each row carries its own random network's k-NN (the same for both values of a seed).
    let ri: Vec<f64> = df.column("knn_random_init").unwrap().f64().unwrap().iter().map(|v| v.unwrap()).collect();
    assert!(ri.iter().all(|x| (0.0..=100.0).contains(x)), "{ri:?}");
    assert_eq!((ri[0], ri[1]), (ri[2], ri[3]), "{ri:?}");
    let again = mixbt::train::sweep(&r, "lambda_reg", &[0.0], &[1]).unwrap();
    assert_eq!(again.column("final_loss").unwrap().f64().unwrap().get(0), Some(loss[1]), "a seed repeats its run");
    assert!(mixbt::train::sweep(&r, "lambda_reg", &[], &[0]).is_err());
}

/// `MIXBT_DEVICE` (the notebooks' device): cpu by default, CUDA only in a CUDA build, anything
/// else a clear error.
#[test]
fn notebook_device_choice() {
    assert!(matches!(mixbt::params::parse_device("cpu").unwrap(), Device::Cpu));
    let e = mixbt::params::parse_device("tpu").unwrap_err().to_string();
    assert!(e.contains("bad device `tpu`"), "{e}");
    if !cfg!(feature = "cuda") {
        let e = mixbt::params::parse_device("cuda:0").unwrap_err().to_string();
        assert!(e.contains("without CUDA") && e.contains("features = [\"cuda\"]"), "{e}");
    }
    if std::env::var("MIXBT_DEVICE").is_err() {
        assert!(matches!(mixbt::params::device_from_env().unwrap(), Device::Cpu));
    }
}

/// The text elements of an SVG, trimmed.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text").skip(1).filter_map(|t| t.split_once('>').map(|(_, r)| r.split('<').next().unwrap_or("").trim().to_string())).collect()
}

/// Bars draw with positive sizes and their labels, one bar or several (a single bar used to get
/// a negative width).
#[test]
fn bars_have_positive_sizes_and_labels() {
    for bars in [vec![("alone".to_string(), 42.5)], vec![("a".to_string(), 10.0), ("bb".to_string(), 30.0), ("ccc".to_string(), 20.0)]] {
        let svg = mixbt::report::bars_svg("t", "accuracy %", &bars).unwrap().0;
        assert!(!svg.contains("width=\"-") && !svg.contains("height=\"-"), "negative size in {svg}");
        let t = texts(&svg);
        for (name, v) in &bars {
            assert!(t.contains(name), "label {name} in {t:?}");
            assert!(t.contains(&format!("{v:.2}")), "value {v} in {t:?}");
        }
    }
}

/// Transfer bars: one target or several, with and without a reference bar, never a negative size.
#[test]
fn transfer_bars_have_positive_sizes() {
    use mixbt::eval::TransferRow;
    let row = |t: &str, best: f64| TransferRow { target: t.into(), classes: 10, train: 100, test: 50, best_top1: best, last_top1: best - 1.0, seconds: 1.0 };
    let refs = [mixbt::report::Reference { target: "dtd".into(), top1: 50.0, source: "paper".into() }];
    for rows in [vec![row("mnist", 82.1)], vec![row("dtd", 40.0), row("mnist", 82.1), row("aircraft", 20.5)]] {
        for r in [&refs[..], &[]] {
            let svg = mixbt::report::transfer_chart("t", &rows, r).unwrap().0;
            assert!(!svg.contains("width=\"-") && !svg.contains("height=\"-"), "negative size in {svg}");
            let t = texts(&svg);
            for x in &rows {
                assert!(t.contains(&x.target) && t.contains(&format!("{:.1}", x.best_top1)), "{} in {t:?}", x.target);
            }
        }
    }
}

/// Study curves: both arms in the legend (beside the plot), references labelled, whole-number ticks.
#[test]
fn curves_name_arms_and_references() {
    use mixbt::report::{curves_svg, mean_curve, Arm};
    let arms = vec![
        Arm { name: "Barlow Twins".into(), curves: vec![vec![(0.0, 30.0), (4.0, 40.0)], vec![(0.0, 32.0), (4.0, 44.0)]] },
        Arm { name: "Mixed Barlow Twins".into(), curves: vec![vec![(0.0, 30.0), (4.0, 45.0)]] },
    ];
    assert_eq!(mean_curve(&arms[0].curves), vec![(0.0, 31.0), (4.0, 42.0)]);
    let svg = curves_svg("k-NN", "epoch", "k-NN top-1 (%)", &arms, &[("chance (10 %)".into(), 10.0)]).unwrap().0;
    let t = texts(&svg);
    for s in ["Barlow Twins (mean)", "Mixed Barlow Twins (mean)", "one seed (2)", "one seed (1)", "chance (10 %)", "epoch"] {
        assert!(t.iter().any(|x| x == s), "{s} in {t:?}");
    }
    assert!(t.iter().all(|x| x.parse::<f64>().map_or(true, |v| v.fract() == 0.0)), "whole-number ticks: {t:?}");
}

/// Tables write floats for a reader: learning rates in scientific notation, whole numbers
/// without decimals, accuracies with two decimals, a column's decimals on request.
#[test]
fn tables_write_floats_for_a_reader() {
    use mixbt::report::{FloatFormat, Table};
    assert_eq!(Table::format_column("lr", &[0.003, 0.0]), FloatFormat::Scientific(2));
    assert_eq!(Table::format_column("base_lr", &[0.5]), FloatFormat::Scientific(2));
    assert_eq!(Table::format_column("knn_top1", &[27.57, 46.17]), FloatFormat::Fixed(2));
    assert_eq!(Table::format_column("loss", &[412.3, 30.1]), FloatFormat::Fixed(1));
    assert_eq!(Table::format_column("alpha", &[0.158, 0.9]), FloatFormat::Fixed(3));
    assert_eq!(Table::format_column("seconds", &[12.0, 30.0]), FloatFormat::Whole);
    assert_eq!(Table::format_column("tiny", &[1e-5, -2e-4]), FloatFormat::Scientific(2));
    let df = mixbt::polars::prelude::df!(
        "lr" => [0.003f64, 0.0005],
        "knn_top1" => [46.1666, f64::NAN],
        "epochs" => [40.0f64, 40.0],
        "linear_top1" => [47.6612f64, 48.0]
    )
    .unwrap();
    let html = Table::new(df).decimals("linear_top1", 1).to_html();
    for cell in ["<td>3.00e-3</td>", "<td>5.00e-4</td>", "<td>46.17</td>", "<td></td>", "<td>40</td>", "<td>47.7</td>"] {
        assert!(html.contains(cell), "{cell} in {html}");
    }
    assert!(!html.contains("0.0000") && !html.contains("46.1666"), "{html}");
}
