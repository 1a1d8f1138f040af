//! Arbitrary text → `parse_labels`: never panics; every label is non-empty, trimmed, on
//! one line and not a `#` comment.
#![no_main]

use gsttrtvision::config::parse_labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let labels = parse_labels(&text);
    assert!(labels.len() <= text.len());
    for l in &labels {
        assert!(!l.is_empty());
        assert_eq!(l.trim(), l.as_str());
        assert!(!l.starts_with('#'));
        assert!(!l.contains('\n'));
    }
});
