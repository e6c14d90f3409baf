//! Hub data sets (`hf:<org>/<name>`: `uoft-cs/cifar10`, `uoft-cs/cifar100`,
//! `zh-plus/tiny-imagenet`, `jxie/stl10`, …) downloaded as parquet through the Hub client and
//! read with the parquet reader.

use std::sync::Arc;

use super::{parquet, DynDataset, Split};
use crate::hub::{list_files, pull, HubConfig, HubRef, RepoKind};
use crate::{Error, Result};

/// Open `split` of the Hub data set `repo` (downloads its parquet files into the cache), with
/// the Hub settings of the environment.
pub fn open_hub_dataset(repo: &str, split: Split, skip_corrupt: bool) -> Result<DynDataset> {
    open_hub_dataset_with(repo, split, skip_corrupt, &HubConfig::from_env())
}

/// [`open_hub_dataset`] with explicit Hub settings.
pub fn open_hub_dataset_with(repo: &str, split: Split, skip_corrupt: bool, cfg: &HubConfig) -> Result<DynDataset> {
    let cfg = cfg.clone();
    let files: Vec<String> = list_files(RepoKind::Dataset, repo, "main", &cfg)?.into_iter().filter(|f| f.ends_with(".parquet")).collect();
    if files.is_empty() {
        return Err(Error::Hub(format!("hf:{repo}: the data set has no parquet files")));
    }
    let chosen = parquet::select_split(&files, split);
    if chosen.is_empty() {
        let offline = if cfg.offline { " (offline: only the files already in the cache count)" } else { "" };
        return Err(Error::Hub(format!("hf:{repo}: no parquet files for the {split:?} split among {}{offline}", files.join(", "))));
    }
    let mut paths = vec![];
    for f in chosen {
        let r = HubRef { kind: RepoKind::Dataset, repo: repo.to_string(), revision: "main".into(), path: f };
        paths.push(pull(&r, &cfg, None)?);
    }
    let pc = parquet::ParquetConfig { skip_corrupt, ..Default::default() };
    Ok(Arc::new(parquet::ParquetDataset::open_files(&paths, pc)?))
}
