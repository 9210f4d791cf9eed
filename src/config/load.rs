//! Loading: text → wire types → validated [`Config`], with every error.
//!
//! Three passes over the same text, so that one run reports as much as it
//! can: yaml-rust2 indexes positions ([`Index`]); serde_yaml deserializes the
//! wire types through `serde_ignored`, which reports every unknown key (a
//! syntax or type error stops serde, and is reported with whatever unknown
//! keys came before it); validation then checks the values all at once.

use std::path::Path;

use super::Config;
use super::error::{Error, Errors};
use super::position::Index;
use super::validate::{Sources, validate};
use super::wire::{Segment, WireConfig, known_keys, path_string};

/// Loads and validates the config file at `path`; `node_name` may come from
/// the process environment or the host name.
pub fn load_file(path: &Path) -> Result<Config, Errors> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let error = Error {
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
            line: None,
            column: None,
        };
        Errors::new(source.clone(), vec![error])
    })?;
    load_str(&text, &source, &|name| std::env::var(name).ok())
}

/// Loads and validates config `text`; `source` names it in errors, `env`
/// stands in for the process environment (tests inject their own).
pub fn load_str(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Errors> {
    let sources = Sources {
        env,
        hostname: &system_hostname,
    };
    load_with(text, source, &sources)
}

/// The kernel's host name, the last fallback for `node_name`.
fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
}

pub(crate) fn load_with(text: &str, source: &str, sources: &Sources<'_>) -> Result<Config, Errors> {
    let index = Index::build(text);
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let parsed: Result<Option<WireConfig>, serde_yaml::Error> =
        serde_ignored::deserialize(serde_yaml::Deserializer::from_str(text), |path| {
            unknown.push(segments(&path))
        });
    let mut errors: Vec<Error> = unknown
        .iter()
        .map(|segments| unknown_key(segments, &index))
        .collect();
    let config = match parsed {
        Err(e) => {
            errors.push(from_serde(&e, &index));
            None
        }
        // An empty document (or only comments) is a config of all defaults.
        Ok(wire) => match validate(wire.unwrap_or_default(), &index, sources) {
            Ok(config) => Some(config),
            Err(mut found) => {
                errors.append(&mut found);
                None
            }
        },
    };
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => {
            // File order reads best; errors without a position go last.
            errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
            Err(Errors::new(source, errors))
        }
    }
}

/// `serde_ignored`'s path as segments; `Some`/newtype wrappers are not keys.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(Segment::Index(*index)),
        Path::Map { key, .. } => out.push(Segment::Key(key.clone())),
        _ => {}
    }
    out
}

fn unknown_key(segments: &[Segment], index: &Index) -> Error {
    let path = path_string(segments);
    let message = match segments.split_last() {
        Some((Segment::Key(key), parent)) => match suggest(key, known_keys(parent)) {
            Some(known) => format!("unknown key; did you mean `{known}`?"),
            None => "unknown key".to_owned(),
        },
        _ => "unknown key".to_owned(),
    };
    let pos = index.key(&path);
    Error {
        path,
        message,
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
    }
}

/// The known key closest to `key`: equal ignoring case, `_` and `-`
/// (`weightsMib`), else within edit distance 2 (`weigths_mib`).
fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let normal = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    if let Some(k) = known.iter().find(|k| normal(k) == normal(key)) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit
/// (optimal string alignment), since transpositions are the common typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A serde_yaml error as an [`Error`]: its key path prefix (serde_yaml 0.9
/// writes `models[1].weights_mib: invalid type…`, the same path syntax as
/// ours) becomes the path, and its ` at line L column C` the position.
fn from_serde(e: &serde_yaml::Error, index: &Index) -> Error {
    let mut text = e.to_string();
    let location = e.location();
    if let Some(loc) = &location {
        let at = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(start) = text.find(&at) {
            text.replace_range(start..start + at.len(), "");
        }
    }
    // Only a prefix that names a value in this document is a path; a message
    // of its own could contain `: ` too.
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if index.contains(path) => (path.to_owned(), message.to_owned()),
        _ => (String::new(), text),
    };
    Error {
        path,
        message,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
    }
}

#[cfg(test)]
mod tests;
