//! `srcsel daemon [--config PATH]`.
use std::path::PathBuf;

use crate::{
    config::{self, Config},
    kernel::{self, privileges},
};

pub fn daemon(config: Option<PathBuf>) -> anyhow::Result<()> {
    privileges::require()?;
    // A missing file is an empty config, unless it was named explicitly.
    let (config, path) = match config {
        Some(path) => (Config::load(&path, true)?, path),
        None => {
            let path = PathBuf::from(config::DEFAULT_PATH);
            (Config::load(&path, false)?, path)
        }
    };
    kernel::block_on(crate::daemon::run(config, path))
}
