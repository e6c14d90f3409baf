//! Parameter-name layouts: one table maps each part of the network to its name in each layout,
//! so the original checkpoints load one-to-one.

use serde::{Deserialize, Serialize};

/// How the parts of an encoder are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyLayout {
    /// `model.py` `Model` for CIFAR-10/100: `f` = Sequential(conv1, bn1, relu, layer1..4, avgpool), `g` = projector.
    SmallCifar,
    /// `model.py` `Model` for STL-10/TinyImageNet: the max-pool stays in `f`, so the layers shift by one.
    SmallPooled,
    /// `main_imagenet.py` `BarlowTwins`: torchvision names under `backbone.`, projector under `projector.`.
    ImageNet,
    /// A bare torchvision ResNet state dict (the released `resnet50.pth`): no prefix, no projector.
    TorchVision,
}

/// The named parts of an encoder.
pub const PARTS: [&str; 7] = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "projector"];

/// The mapping table: part → name in each layout, columns in the order of [`KeyLayout`].
/// `""` marks a part the layout does not have.
pub const KEY_TABLE: [(&str, [&str; 4]); 7] = [
    ("conv1", ["f.0", "f.0", "backbone.conv1", "conv1"]),
    ("bn1", ["f.1", "f.1", "backbone.bn1", "bn1"]),
    ("layer1", ["f.3", "f.4", "backbone.layer1", "layer1"]),
    ("layer2", ["f.4", "f.5", "backbone.layer2", "layer2"]),
    ("layer3", ["f.5", "f.6", "backbone.layer3", "layer3"]),
    ("layer4", ["f.6", "f.7", "backbone.layer4", "layer4"]),
    ("projector", ["g", "g", "projector", ""]),
];

impl KeyLayout {
    fn column(self) -> usize {
        match self {
            KeyLayout::SmallCifar => 0,
            KeyLayout::SmallPooled => 1,
            KeyLayout::ImageNet => 2,
            KeyLayout::TorchVision => 3,
        }
    }

    /// The name prefix of `part` (one of [`PARTS`]) in this layout.
    pub fn prefix(self, part: &str) -> &'static str {
        KEY_TABLE
            .iter()
            .find(|(p, _)| *p == part)
            .map(|(_, cols)| cols[self.column()])
            .unwrap_or_else(|| panic!("unknown network part `{part}`"))
    }

    /// Rename `key` from this layout to `to`. `None` when the key belongs to no known part or the
    /// part does not exist in `to`.
    pub fn translate(self, key: &str, to: KeyLayout) -> Option<String> {
        // Longest matching prefix first (so `f.1` never captures `f.10`).
        let mut best: Option<(&str, &str)> = None;
        for (_, cols) in KEY_TABLE.iter() {
            let from = cols[self.column()];
            if from.is_empty() {
                continue;
            }
            if key == from || key.starts_with(&format!("{from}.")) {
                if best.map(|(f, _)| from.len() > f.len()).unwrap_or(true) {
                    best = Some((from, cols[to.column()]));
                }
            }
        }
        let (from, dst) = best?;
        if dst.is_empty() {
            return None;
        }
        Some(format!("{dst}{}", &key[from.len()..]))
    }
}

/// Index of the `i`-th Linear in a projector Sequential (Linear, BN, ReLU, Linear, BN, ReLU, …, Linear).
pub fn projector_linear_index(i: usize) -> usize {
    3 * i
}

/// Index of the BN after the `i`-th Linear of a projector.
pub fn projector_bn_index(i: usize) -> usize {
    3 * i + 1
}
