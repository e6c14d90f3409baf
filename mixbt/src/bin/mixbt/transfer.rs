//! `mixbt transfer`: linear transfer of a checkpoint's frozen backbone to the original's seven
//! downstream data sets (or any labelled folder / Hub data set), as `evaluate_transfer.py`.

use std::path::PathBuf;

use clap::Args;

use mixbt::data::transfer::TargetSpec;
use mixbt::eval::transfer::{transfer, TransferConfig, TransferEvent};
use mixbt::eval::{LinearProbeConfig, ProbeOptimizer};
use mixbt::Result;

use crate::{at_least_one, parse_device, positive, workers};

#[derive(Args)]
pub struct TransferArgs {
    /// A model file (.safetensors / .pth), a run or checkpoint folder, or hub:<org>/<repo>/<path>.
    #[arg(long)]
    checkpoint: String,
    /// Comma-separated targets: dtd, mnist, fashionmnist, cu_birds, vgg_flower, traffic_sign,
    /// aircraft (under --data-root), builtin, NAME=<folder> (a known target elsewhere, or any
    /// labelled image folder with train/ and test/ or val/), NAME=hf:<org>/<data set>. `all`: the seven.
    #[arg(long, default_value = "all")]
    targets: String,
    /// The folder holding one sub-folder per known target (dtd/, mnist/, …).
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    /// Where transfer.csv, transfer.parquet, transfer.json and transfer.svg go.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    epochs: usize,
    #[arg(long, default_value_t = 128, value_parser = at_least_one)]
    batch_size: usize,
    #[arg(long, default_value_t = 0.01, value_parser = positive)]
    lr: f64,
    /// Square image side (default: 32 for a CIFAR-stem model, 64 otherwise, as the original).
    #[arg(long, value_parser = at_least_one)]
    resize: Option<usize>,
    /// The original's quirk: the frozen backbone's BN in train mode while the classifier trains
    /// (a forward pass per batch and epoch; much slower, different numbers).
    #[arg(long)]
    bn_train_quirk: bool,
    /// Run the backbone on every batch of every epoch even when cached features would give the
    /// same numbers (a check of the cache, slow).
    #[arg(long)]
    no_cache: bool,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Image-decoding threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Transfer the randomly initialised network of the checkpoint's architecture instead (fresh
    /// weights from --seed): the baseline a pre-trained model should beat.
    #[arg(long)]
    random_init: bool,
    /// Print the report as JSON on the last line.
    #[arg(long)]
    json: bool,
    /// Replace a previous report in --out instead of refusing.
    #[arg(long)]
    overwrite: bool,
}

/// The files `transfer` writes into --out.
const OUTPUTS: mixbt::io::Outputs = mixbt::io::Outputs {
    previous: &["transfer.csv", "transfer.parquet", "transfer.json", "transfer.svg"],
    removed: &["transfer.csv", "transfer.parquet", "transfer.json", "transfer.svg"],
    what: "a previous transfer report",
    hint: "replace it with --overwrite, or choose another --out",
};

pub fn run(a: TransferArgs) -> Result<()> {
    let targets = if a.targets.trim() == "all" { TargetSpec::all_known() } else { TargetSpec::parse_list(&a.targets)? };
    let device = parse_device(&a.device)?;
    let path = mixbt::hub::resolve_checkpoint(&a.checkpoint)?;
    let (enc, _, enc_cfg) = mixbt::ckpt::load_encoder(&path, &device)?;
    let enc = if a.random_init {
        let store = mixbt::params::ParamStore::new(a.seed, mixbt::candle_core::DType::F32, &device);
        mixbt::model::encoder(&enc_cfg, store.var_builder())?
    } else {
        enc
    };
    let mut probe = LinearProbeConfig::transfer();
    probe.epochs = a.epochs;
    probe.batch_size = a.batch_size;
    if let ProbeOptimizer::SgdStep { lr, .. } = &mut probe.optimizer {
        *lr = a.lr;
    }
    probe.bn_train_mode_quirk = a.bn_train_quirk;
    probe.cache_features = !a.no_cache;
    probe.seed = a.seed;
    probe.workers = workers(a.workers);
    let cfg = TransferConfig { probe, resize: a.resize, ..Default::default() };
    let resize = cfg.resize.unwrap_or_else(|| mixbt::eval::transfer::default_resize(&enc));
    // Claimed before the work: a second `transfer` into the same folder fails at once.
    let _claim = mixbt::io::DirLock::claim(&a.out, &OUTPUTS, a.overwrite)?;
    let what = if a.random_init { format!("the randomly initialised {} of {}", enc_cfg.backbone.arch.name(), path.display()) } else { path.display().to_string() };
    eprintln!("transfer of {what} ({resize}×{resize} images) to {} target(s)", targets.len());

    let style = indicatif::ProgressStyle::with_template("{msg:>14} {bar:30} {pos}/{len} epochs ({elapsed})").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let mut bar: Option<indicatif::ProgressBar> = None;
    let report = transfer(&enc, &targets, Some(&a.data_root), &cfg, |ev| match ev {
        TransferEvent::Skipped { target, folder } => eprintln!("{target:>14}: skipped ({} not found)", folder.display()),
        TransferEvent::Started { target, train, test, epochs } => {
            eprintln!("{target:>14}: {train} train, {test} test images; embedding");
            let pb = indicatif::ProgressBar::new(epochs as u64);
            pb.set_style(style.clone());
            pb.set_message(target.to_string());
            bar = Some(pb);
        }
        TransferEvent::Epoch { epoch, .. } => {
            if let Some(pb) = &bar {
                pb.set_position(epoch.epoch as u64);
            }
        }
        TransferEvent::Finished { row } => {
            if let Some(pb) = bar.take() {
                pb.finish_and_clear();
            }
            eprintln!("{:>14}: best top-1 {:.2}%, last {:.2}% ({:.1} s)", row.target, row.best_top1, row.last_top1, row.seconds);
        }
    })?;

    let mut df = report.to_dataframe()?;
    mixbt::io::write_csv(&a.out.join("transfer.csv"), &mut df)?;
    mixbt::io::write_parquet(&a.out.join("transfer.parquet"), &mut df)?;
    let settings = serde_json::json!({
        "checkpoint": a.checkpoint,
        "random_init": a.random_init,
        "resize": resize,
        "probe": cfg.probe,
        "skipped": report.skipped.iter().map(|(t, f)| serde_json::json!({"target": t, "folder": f})).collect::<Vec<_>>(),
        "rows": report.rows,
    });
    mixbt::io::atomic_write(&a.out.join("transfer.json"), serde_json::to_string_pretty(&settings)?.as_bytes())?;
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let title = if a.random_init { format!("Linear transfer of a random {} (baseline)", enc_cfg.backbone.arch.name()) } else { format!("Linear transfer of {name}") };
    mixbt::report::transfer_chart(&title, &report.rows, &[])?.save(&a.out.join("transfer.svg"))?;
    println!("{df}");
    if !report.skipped.is_empty() {
        println!("skipped (folder not found): {}", report.skipped.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", "));
    }
    println!("wrote {}/transfer.{{csv,parquet,json,svg}}", a.out.display());
    if a.json {
        println!("{}", serde_json::to_string(&settings)?);
    }
    Ok(())
}
