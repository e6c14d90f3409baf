//! Self-supervised losses.

pub mod barlow_twins;

pub use barlow_twins::{
    cross_correlation, mix_batch, off_diagonal_sq_sum, perm_tensor, prepared, sample_mix, standardize,
    CrossCorrelations, LossParts, MixVariant, MixedBarlowTwins,
};
