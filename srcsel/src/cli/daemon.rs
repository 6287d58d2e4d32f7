//! `srcsel daemon [--config PATH]`.
use std::path::PathBuf;

use crate::{
    config::{self, Config},
    kernel::{self, privileges},
};

pub fn daemon(config: Option<PathBuf>) -> anyhow::Result<()> {
    privileges::require()?;
    // A missing file is an empty config, unless it was named explicitly.
    let config = match config {
        Some(path) => Config::load(&path, true)?,
        None => Config::load(std::path::Path::new(config::DEFAULT_PATH), false)?,
    };
    kernel::block_on(crate::daemon::run(config))
}
