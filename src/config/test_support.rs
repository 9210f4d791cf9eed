//! Helpers shared by the config unit tests.

use super::validate::{Reader, Sources};
use super::{Config, Error, Errors};

/// The catalog [`load`] appends to a text that has none: most tests are about
/// other sections, and an empty catalog is an error of its own (tested with
/// [`load_exactly`]). Appended last, it moves no line of the text.
pub(crate) const ONE_MODEL: &str =
    "models: [{name: m, weights_mib: 1, working_mib: 1, load_ms: 0}]\n";

/// Loads `text` (with [`ONE_MODEL`] when it has no `models` key) with no
/// environment and no host name, so that a missing `node_name` is an error
/// rather than whatever machine runs the test.
pub(crate) fn load(text: &str) -> Result<Config, Errors> {
    load_with_env(text, &|_| None, &|| None)
}

pub(crate) fn load_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    hostname: &dyn Fn() -> Option<String>,
) -> Result<Config, Errors> {
    let text = if text.lines().any(|l| l.starts_with("models:")) {
        text.to_owned()
    } else if text.is_empty() || text.ends_with('\n') {
        format!("{text}{ONE_MODEL}")
    } else {
        format!("{text}\n{ONE_MODEL}")
    };
    load_exactly(&text, env, hostname)
}

/// Loads `text` as it is.
pub(crate) fn load_exactly(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    hostname: &dyn Fn() -> Option<String>,
) -> Result<Config, Errors> {
    load_as(text, env, hostname, Reader::Daemon)
}

/// Loads `text` as it is, for `reader`.
pub(crate) fn load_as(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    hostname: &dyn Fn() -> Option<String>,
    reader: Reader,
) -> Result<Config, Errors> {
    let sources = Sources {
        env,
        hostname,
        reader,
    };
    super::load::load_with(text, "test.yaml", &sources)
}

/// The errors of loading `text`; panics if it loads.
pub(crate) fn errors(text: &str) -> Vec<Error> {
    match load(text) {
        Ok(config) => panic!("expected errors, loaded {config:#?}"),
        Err(errors) => errors.errors().to_vec(),
    }
}

/// An expected error at a known position.
pub(crate) fn err(path: &str, message: &str, line: usize, column: usize) -> Error {
    Error {
        path: path.to_owned(),
        message: message.to_owned(),
        line: Some(line),
        column: Some(column),
    }
}
