//! Self-supervised losses: Mixed Barlow Twins, and the baselines' NT-Xent, normalised MSE and
//! whitening (`ssl`).

pub mod barlow_twins;
pub mod ssl;

pub use barlow_twins::{
    cross_correlation, gram_form, GRAM_MIN_D, mix_batch, off_diagonal_sq_sum, perm_tensor, prepared, sample_mix, sample_mix_grouped, standardize, standardize_blocks,
    CrossCorrelations, LossParts, MixVariant, MixedBarlowTwins,
};
pub use ssl::{norm_mse, nt_xent, nt_xent_directions, whiten};
