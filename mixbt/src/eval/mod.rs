//! Evaluation: weighted k-NN, linear probes, feature extraction.

pub mod classify;
pub mod features;
pub mod knn;
pub mod linear;
pub mod transfer;

pub use classify::{classify, Accuracy};
pub use features::{extract, labelled_features, Features};
pub use knn::{knn_accuracy, knn_eval, knn_eval_all, knn_majority, knn_predict, KnnConfig, KnnResult};
pub use linear::{linear_probe, LinearProbeConfig, ProbeEpoch, ProbeOptimizer, ProbeResult};
pub use linear::probe_features;
pub use transfer::{transfer, TransferConfig, TransferReport, TransferRow, TransferTarget};
