//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fixtures;

use mixbt::data::BuiltinConfig;
use mixbt::model::ProjectorConfig;
use mixbt::train::{presets, Recipe};

/// A tiny recipe on the built-in data set: ResNet-18 at width 1/16, projector 32-32, batch 16.
pub fn tiny_recipe(train: usize, epochs: usize) -> Recipe {
    let mut r = presets::quickstart();
    r.encoder.backbone.width = 0.0625;
    r.encoder.projector = ProjectorConfig::small_with_hidden(r.encoder.backbone.feature_dim(), 32, 32);
    r.data.builtin = Some(BuiltinConfig { seed: 0, train_size: train, test_size: 40, size: 32 });
    r.batch_size = 16;
    r.epochs = epochs;
    r.knn_every_epochs = 0;
    r.knn.k = 20;
    r
}

/// Every file (not folder) under `dir`, recursively; empty when `dir` is missing.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
