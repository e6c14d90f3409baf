//! Hugging Face Hub: released checkpoints, pulls, pushes, Hub data sets.

pub mod datasets;
