//! Pre-training: recipes and presets, the step-wise pre-trainer, history and checkpoints.

pub mod checkpoint;
pub mod history;
pub mod presets;
pub mod pretrainer;
pub mod recipe;
pub mod study;
pub mod sweep;

pub use history::{History, Metrics, StepStats};
pub use pretrainer::{GradReduce, LossStats, PretrainOptions, Pretrainer, Summary};
pub use recipe::{migrate_json, DataConfig, LrSchedule, PaperResult, Recipe, StepSchedule};
pub use sweep::{sweep, sweep_with};
