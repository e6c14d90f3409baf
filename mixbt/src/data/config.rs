//! [`DataConfig`]: where a run's data come from and how they are transformed, and the one way to
//! open it ([`open`], [`open_bank`]): local readers, the built-in set and `hf:` Hub data sets.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    BuiltinConfig, BuiltinShapes, Cifar10, Cifar100, CifarLabel, DatasetKind, DynDataset, ImageFolder, ImageFolderConfig,
    ParquetConfig, ParquetDataset, Split, Stl10, Stl10Split, Subset, Transform,
};
use crate::{Error, Result};

/// Where the data come from and how they are transformed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub kind: DatasetKind,
    /// Local folder (not needed for `builtin`).
    pub dir: Option<PathBuf>,
    /// A Hub data set (`org/name`) to download as parquet, instead of `dir`.
    #[serde(default)]
    pub hub_dataset: Option<String>,
    /// Split used for pre-training (`train`, or `train+unlabeled` for STL-10).
    pub pretrain_split: Split,
    /// View A and view B transforms (the same for the small data sets).
    pub view_a: Transform,
    pub view_b: Transform,
    /// k-NN / probe evaluation transform.
    pub eval: Transform,
    /// Use only this many pre-training images (a stratified sample: every class keeps its share).
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Use only this many test images for k-NN (stratified).
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Use only this many train images as the k-NN bank (stratified; default: the whole train split).
    #[serde(default)]
    pub bank_subset: Option<usize>,
    /// Built-in data set settings.
    #[serde(default)]
    pub builtin: Option<BuiltinConfig>,
    #[serde(default)]
    pub skip_corrupt: bool,
}

impl DataConfig {
    /// The original pipelines of data set `kind`: pre-training split, the two views' transforms
    /// and the evaluation transform (reference §5); no folder, no subsets.
    pub fn for_kind(kind: DatasetKind) -> Self {
        let (split, a, e) = match kind {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => (Split::Train, Transform::cifar_train(), Transform::cifar_eval()),
            DatasetKind::Stl10 => (Split::TrainUnlabeled, Transform::stl_train(), Transform::stl_eval()),
            DatasetKind::TinyImagenet => (Split::Train, Transform::tiny_train(), Transform::tiny_eval()),
            DatasetKind::Imagenet => (Split::Train, Transform::imagenet_view1(), Transform::imagenet_eval()),
            DatasetKind::Builtin => (Split::Train, Transform::builtin_train(), Transform::builtin_eval()),
            // Any image size: the views crop to 32 already, the evaluation resizes and crops too.
            DatasetKind::ImageFolder | DatasetKind::Parquet => (Split::Train, Transform::cifar_train(), Transform::folder_eval()),
        };
        let b = if kind == DatasetKind::Imagenet { Transform::imagenet_view2() } else { a.clone() };
        DataConfig {
            kind,
            dir: None,
            hub_dataset: None,
            pretrain_split: split,
            view_a: a,
            view_b: b,
            eval: e,
            train_subset: None,
            test_subset: None,
            bank_subset: None,
            builtin: None,
            skip_corrupt: false,
        }
    }

    /// Set the source from a `--dataset` value: a kind (`cifar10`, `image-folder`, …) or
    /// `hf:<org>/<name>` (a Hub data set read as parquet). Transforms are left as they are.
    pub fn set_source(&mut self, spec: &str) -> Result<()> {
        if let Some(repo) = spec.strip_prefix("hf:") {
            self.hub_dataset = Some(repo.to_string());
            self.kind = DatasetKind::Parquet;
        } else {
            self.kind = spec.parse()?;
            self.hub_dataset = None;
        }
        Ok(())
    }

    /// An error unless the data can be located: every kind but `builtin` needs `dir` or a Hub
    /// data set. `what` names the recipe in the message.
    pub fn check_located(&self, what: &str) -> Result<()> {
        if self.kind != DatasetKind::Builtin && self.dir.is_none() && self.hub_dataset.is_none() {
            return Err(Error::Config(format!("{what} reads {}: give --data-dir (or --dataset builtin)", self.kind.name())));
        }
        Ok(())
    }
}

/// Open split `split` of the data set of `cfg`, with its subset (`test_subset` for the test
/// split, `train_subset` otherwise) applied.
pub fn open(cfg: &DataConfig, split: Split) -> Result<DynDataset> {
    let subset = match split {
        Split::Test => cfg.test_subset,
        _ => cfg.train_subset,
    };
    open_subset(cfg, split, subset)
}

/// The k-NN bank of `cfg`: its labelled train split (STL-10: `train`, not `unlabeled`), with
/// `bank_subset` applied.
pub fn open_bank(cfg: &DataConfig) -> Result<DynDataset> {
    open_subset(cfg, Split::Train, cfg.bank_subset)
}

fn open_subset(cfg: &DataConfig, split: Split, subset: Option<usize>) -> Result<DynDataset> {
    let ds = match &cfg.hub_dataset {
        Some(repo) => super::hub::open_hub_dataset(repo, split, cfg.skip_corrupt)?,
        None => open_local(cfg, split)?,
    };
    Ok(match subset {
        Some(n) if n < ds.len() => Arc::new(Subset::stratified(ds, n)),
        _ => ds,
    })
}

/// The folder of `split` in an image-folder data set: `<root>/train` (or `<root>` itself when
/// its sub-folders are the classes) for training; `<root>/val` or `<root>/test` for the test
/// split, which must exist: evaluating on the training images would be a silent wrong answer.
fn image_folder_split(root: &std::path::Path, split: Split) -> Result<PathBuf> {
    if !root.is_dir() {
        return Err(Error::format(root, "no such folder (expected an image folder: train/<class>/…, test/<class>/… or val/<class>/…)"));
    }
    match split {
        Split::Test => ["val", "test"].iter().map(|s| root.join(s)).find(|p| p.is_dir()).ok_or_else(|| {
            Error::format(root, "has no test split: expected a `test/` or `val/` folder of class folders beside `train/` (k-NN and probes evaluate on it)")
        }),
        _ => {
            let train = root.join("train");
            Ok(if train.is_dir() { train } else { root.to_path_buf() })
        }
    }
}

/// A local reader (or the built-in set) for `split`.
fn open_local(cfg: &DataConfig, split: Split) -> Result<DynDataset> {
    let dir = || -> Result<PathBuf> {
        cfg.dir.clone().ok_or_else(|| Error::Config(format!("the {} data set needs --data-dir", cfg.kind.name())))
    };
    Ok(match cfg.kind {
        DatasetKind::Builtin => Arc::new(BuiltinShapes::new(cfg.builtin.unwrap_or_default(), split)),
        DatasetKind::Cifar10 => Arc::new(Cifar10::open(&dir()?, split)?),
        DatasetKind::Cifar100 => Arc::new(Cifar100::open(&dir()?, split, CifarLabel::Fine)?),
        DatasetKind::Stl10 => {
            let s = match split {
                Split::Train => Stl10Split::Train,
                Split::Test => Stl10Split::Test,
                Split::Unlabeled => Stl10Split::Unlabeled,
                Split::TrainUnlabeled => Stl10Split::TrainUnlabeled,
            };
            Arc::new(Stl10::open(&dir()?, s)?)
        }
        DatasetKind::ImageFolder | DatasetKind::TinyImagenet | DatasetKind::Imagenet => {
            let folder = image_folder_split(&dir()?, split)?;
            Arc::new(ImageFolder::open(&folder, ImageFolderConfig { skip_corrupt: cfg.skip_corrupt })?)
        }
        DatasetKind::Parquet => {
            let cfg_p = ParquetConfig { skip_corrupt: cfg.skip_corrupt, ..Default::default() };
            Arc::new(ParquetDataset::open_split(&dir()?, split, cfg_p)?)
        }
    })
}
