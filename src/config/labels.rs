//! Labels files: one class name per line.

use std::path::Path;

use super::{read_text, ConfigError};

/// Reads a labels file: one label per line, surrounding whitespace trimmed, blank lines
/// and lines starting with `#` ignored.
pub fn load_labels(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = read_text(path, "labels file")?;
    Ok(parse_labels(&text))
}

/// The labels of a labels file's text (see [`load_labels`]).
pub fn parse_labels(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}
