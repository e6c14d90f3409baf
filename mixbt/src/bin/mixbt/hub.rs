//! `mixbt hub`: the released checkpoints, pull, convert, push.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use mixbt::ckpt::convert;
use mixbt::hub::{self, HubConfig};
use mixbt::{Error, Result};

#[derive(Subcommand)]
pub enum HubCmd {
    /// The paper's released checkpoints (reference §8).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Download a file into the Hub cache (verified) and print its path.
    Pull {
        /// hub:<org>/<repo>[@revision]/<path>, or a released file name (e.g. 4wdhbpcf_0.0078125_1024_256_cifar10_model.pth).
        reference: String,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Convert a checkpoint (.pth of the original code, or ours) into safetensors + config.json + model card.
    Convert {
        /// A path or hub: reference.
        checkpoint: String,
        #[arg(long)]
        out: PathBuf,
        /// Replace a previous conversion in --out instead of refusing.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Push a converted model folder or a run folder to a Hub model repo.
    Push {
        /// The folder (model.safetensors, config.json, README.md; runs also push history and plots).
        folder: PathBuf,
        /// <org>/<name>
        #[arg(long)]
        repo: String,
        #[arg(long, default_value = "Upload with mixbt")]
        message: String,
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        hub: HubArgs,
    },
}

#[derive(Args, Clone)]
pub struct HubArgs {
    /// Hub endpoint (default $HF_ENDPOINT or https://huggingface.co).
    #[arg(long)]
    endpoint: Option<String>,
    /// Access token (default $HF_TOKEN or the saved token).
    #[arg(long)]
    token: Option<String>,
    /// Cache folder (default $HF_HUB_CACHE or ~/.cache/huggingface/hub).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Use the cache only.
    #[arg(long)]
    offline: bool,
}

impl HubArgs {
    /// Apply the flags as the environment the library reads.
    fn apply(&self) {
        let set = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                std::env::set_var(k, v);
            }
        };
        set("HF_ENDPOINT", self.endpoint.clone());
        set("HF_TOKEN", self.token.clone());
        set("HF_HUB_CACHE", self.cache_dir.as_ref().map(|c| c.display().to_string()));
        set("HF_HUB_OFFLINE", self.offline.then(|| "1".into()));
    }
}

pub fn run(cmd: HubCmd) -> Result<()> {
    match cmd {
        HubCmd::List { json } => list(json),
        HubCmd::Pull { reference, hub: h } => {
            h.apply();
            let reference = if reference.starts_with("hub:") {
                reference
            } else {
                let reg = hub::registry();
                let c = reg.checkpoints.iter().find(|c| c.file == reference).ok_or_else(|| {
                    Error::Config(format!("`{reference}` is neither a hub: reference nor a released file (see `mixbt hub list`)"))
                })?;
                c.hub_ref(&reg)
            };
            println!("{}", hub::resolve_checkpoint(&reference)?.display());
            Ok(())
        }
        HubCmd::Convert { checkpoint, out, overwrite, hub: h } => {
            h.apply();
            let _claim = mixbt::io::DirLock::claim(&out, &convert::OUTPUTS, overwrite)?;
            let c = convert::convert(&hub::resolve_checkpoint(&checkpoint)?, &checkpoint, &out)?;
            let e = &c.encoder;
            let skipped = if c.skipped_keys.is_empty() { String::new() } else { format!(", {} thop keys skipped", c.skipped_keys.len()) };
            println!(
                "converted {checkpoint} ({} {} stem, width {}, d {}; {}; {} tensors{skipped}) into {}",
                e.backbone.arch.name(),
                e.backbone.stem.name(),
                e.backbone.width,
                e.out_dim(),
                c.contents,
                c.tensors,
                out.display()
            );
            Ok(())
        }
        HubCmd::Push { folder, repo, message, private, hub: h } => {
            h.apply();
            let r = convert::push_run(&HubConfig::from_env(), &folder, &repo, &message, private)?;
            let n = r.lfs_files.len() + r.regular_files.len();
            println!("pushed {n} files to {} (commit {}): LFS {:?}, regular {:?}", r.repo_url, r.commit, r.lfs_files, r.regular_files);
            Ok(())
        }
    }
}

fn list(json: bool) -> Result<()> {
    let reg = hub::registry();
    if json {
        println!("{}", serde_json::to_string_pretty(&reg)?);
        return Ok(());
    }
    println!("Hub repo {} (files under checkpoints/); paper top-1 accuracies", reg.repo);
    println!("{:<54} {:<9} {:<14} {:>5} {:>9} {:>6} {:>6} {:>7} {:>7}  kind", "file", "arch", "dataset", "d", "lambda_bt", "l_reg", "epochs", "k-NN", "linear");
    for c in &reg.checkpoints {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<54} {:<9} {:<14} {:>5} {:>9} {:>6} {:>6} {:>7} {:>7}  {}",
            c.file, c.arch, c.dataset, c.d, c.lambda_bt, c.lambda_reg, c.epochs, f(c.knn_top1), f(c.linear_top1), c.kind
        );
    }
    Ok(())
}
