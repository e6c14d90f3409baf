//! Hub data sets (`hf:<org>/<name>`) downloaded as parquet.

use crate::data::{DynDataset, Split};
use crate::{Error, Result};

/// Open a Hub data set's split (downloads its parquet files into the cache).
pub fn open_hub_dataset(repo: &str, _split: Split, _skip_corrupt: bool) -> Result<DynDataset> {
    Err(Error::Hub(format!("Hub data set `{repo}`: not available in this build")))
}
