//! `mixbt data`: data-set tools.

use clap::Subcommand;

use mixbt::data::{self, DataConfig, DatasetKind, Split};
use mixbt::{Error, Result};

use crate::DataArgs;

#[derive(Subcommand)]
pub enum DataCmd {
    /// Images, classes and per-channel mean/std of a data set.
    Stats {
        #[command(flatten)]
        data: DataArgs,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "train")]
        split: String,
    },
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Stats { data, json, split } => stats(&data, json, &split),
    }
}

fn stats(d: &DataArgs, json: bool, split: &str) -> Result<()> {
    let split: Split = split.parse()?;
    if d.dataset.is_none() {
        return Err(Error::Config("give --dataset".into()));
    }
    let mut cfg = DataConfig::for_kind(DatasetKind::Builtin);
    d.apply(&mut cfg, "data stats")?;
    let ds = data::open(&cfg, split)?;
    let s = data::stats::compute(ds.as_ref())?;
    println!("{}", ds.describe());
    println!("images:  {}", s.images);
    println!("classes: {}", s.classes);
    println!("mean:    [{:.4}, {:.4}, {:.4}]", s.mean[0], s.mean[1], s.mean[2]);
    println!("std:     [{:.4}, {:.4}, {:.4}]", s.std[0], s.std[1], s.std[2]);
    if s.skipped > 0 {
        println!("skipped: {} corrupt images", s.skipped);
    }
    if json {
        println!("{}", serde_json::json!({"images": s.images, "classes": s.classes, "mean": s.mean, "std": s.std}));
    }
    Ok(())
}
