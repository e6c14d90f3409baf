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
//! println!("loss {:.3} (bt {:.3}, reg {:.4}), alpha {:.2}", stats.loss, stats.metric("loss_bt"), stats.metric("loss_reg"), stats.metric("alpha"));
//! let summary = trainer.fit()?;           // the rest of the recipe, with k-NN
//! # Ok::<(), mixbt::Error>(())
//! ```
//!
//! ## Layers
//!
//! The modules form layers; a module imports only from the layers below it (never from one
//! above, so there is no import cycle). Bottom to top:
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | 0 | [`error`], [`rng`] | the error type; small deterministic RNGs |
//! | 1 | [`io`] | atomic writes, safetensors, CSV/parquet tables |
//! | 2 | [`hub`] | the Hub client: references, cache, pull, push of files (no model knowledge) |
//! | 3 | [`dist`] | data-parallel collectives: MPI, NCCL, one process; the world of this process |
//! | 4 | [`ops`] | CPU kernels as candle custom ops (GEMM, conv, BN (synchronised over ranks), Adam) |
//! | 5 | [`params`] | [`ParamStore`](params::ParamStore): named, seeded tensors |
//! | 6 | [`model`] | ResNet, projector, [`Encoder`](model::Encoder) |
//! | 7 | [`loss`] | the (Mixed) Barlow Twins loss as plain functions |
//! | 8 | [`data`] | readers, [`DataConfig`](data::DataConfig) and [`data::open`], augmentations, loader |
//! | 9 | [`optim`] | optimisers and schedules |
//! | 10 | [`method`] | the self-supervised methods as plug-ins: Barlow Twins (plain, mixed), SimCLR, BYOL, W-MSE |
//! | 11 | [`ckpt`] | model and checkpoint files, the `.pth` import, conversion and model cards |
//! | 12 | [`eval`] | features, k-NN ([`eval::knn_eval`]), linear probes |
//! | 13 | [`train`] | recipes and presets, the [`Pretrainer`](train::Pretrainer), history, checkpoints |
//! | 14 | [`report`] | tables and charts for notebooks and `--plots` |
//!
//! Benchmarks are not part of the library: they live in the `mixbt` binary (`mixbt bench`).

// The layers, bottom to top (see the module docs above; `tests/layers.rs` checks the order).
pub mod error;
pub mod rng;

pub mod io;

pub mod hub;

pub mod dist;

pub mod ops;

pub mod params;

pub mod model;

pub mod loss;

pub mod data;

pub mod optim;

pub mod method;

pub mod ckpt;

pub mod eval;

pub mod train;

pub mod report;

pub use error::{Error, Result};

/// Re-exports, so that a notebook needs only `:dep mixbt`.
pub use {candle_core, candle_nn, image, polars, rand, rand_chacha};

/// Everything a notebook needs.
pub mod prelude {
    pub use crate::data::{self, augment, DataConfig, Dataset, DatasetKind, Loader, LoaderConfig, Split, Transform};
    pub use crate::eval::{knn_accuracy, knn_eval, labelled_features, linear_probe, KnnConfig, KnnResult, LinearProbeConfig};
    pub use crate::loss::{mix_batch, sample_mix, LossParts, MixVariant, MixedBarlowTwins};
    pub use crate::model::{encoder, Arch, Encoder, EncoderConfig, Stem};
    pub use crate::params::ParamStore;
    pub use crate::train::{presets, History, PretrainOptions, Pretrainer, Recipe, StepStats, Summary};
    pub use crate::{Error, Result};
    pub use candle_core::{DType, Device, Module, ModuleT, Tensor};
}
