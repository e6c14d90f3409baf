//! # mixbt — Mixed Barlow Twins on candle
//!
//! Self-supervised pre-training with the Barlow Twins loss and the mixed-sample regulariser of
//! "Guarding Barlow Twins Against Overfitting with Mixed Samples" (Bandara et al., 2023),
//! reproducing the original PyTorch code (`wgcban/mix-bt`) exactly: the loss as coded (both the
//! small-data-set and the ImageNet variant), ResNet-18/50 with the original parameter names, the
//! torchvision augmentations, the optimisers and schedules, k-NN and linear probes.
//!
//! ```no_run
//! use mixbt::prelude::*;
//! let mut trainer = Pretrainer::new(presets::quickstart(), PretrainOptions::default())?;
//! let stats = trainer.step()?;            // one step: views A, B and the mixed batch
//! println!("loss {:.3} (bt {:.3}, reg {:.4}), alpha {:.2}", stats.loss, stats.loss_bt, stats.loss_reg, stats.alpha);
//! let summary = trainer.fit()?;           // the rest of the recipe, with k-NN
//! # Ok::<(), mixbt::Error>(())
//! ```

pub mod bench;
pub mod ckpt;
pub mod data;
pub mod error;
pub mod eval;
pub mod hub;
pub mod loss;
pub mod model;
pub mod ops;
pub mod optim;
pub mod params;
pub mod report;
pub mod rng;
pub mod train;

pub use error::{Error, Result};

/// Re-exports, so that a notebook needs only `:dep mixbt`.
pub use {candle_core, candle_nn, image, polars, rand, rand_chacha};

/// Everything a notebook needs.
pub mod prelude {
    pub use crate::data::{self, augment, Dataset, DatasetKind, Loader, LoaderConfig, Split, Transform};
    pub use crate::eval::{knn_accuracy, labelled_features, linear_probe, KnnConfig, KnnResult, LinearProbeConfig};
    pub use crate::loss::{mix_batch, sample_mix, LossParts, MixVariant, MixedBarlowTwins};
    pub use crate::model::{encoder, Arch, Encoder, EncoderConfig, Stem};
    pub use crate::params::ParamStore;
    pub use crate::train::{presets, History, PretrainOptions, Pretrainer, Recipe, StepStats, Summary};
    pub use crate::{Error, Result};
    pub use candle_core::{DType, Device, Module, ModuleT, Tensor};
}
