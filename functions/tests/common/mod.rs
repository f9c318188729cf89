//! The JSON fixtures of `functions/fixtures/`: AppSync and DynamoDB-stream events as AWS
//! sends them, with `{{NAME}}` placeholders for what a test only knows at run time (the
//! application token, a user token).

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every fixture's file name.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A fixture's text with its placeholders replaced.
pub fn fixture_text(name: &str, values: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(fixtures_dir().join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    for (placeholder, value) in values {
        text = text.replace(&format!("{{{{{placeholder}}}}}"), value);
    }
    text
}

pub fn fixture(name: &str, values: &[(&str, &str)]) -> Value {
    serde_json::from_str(&fixture_text(name, values)).unwrap()
}
