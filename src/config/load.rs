//! Loading: text → wire types → validated [`Config`], with every error.
//!
//! The text is first checked for its shape (size, nesting depth, a single
//! document), because the YAML parser behind serde_yaml takes super-linear
//! time on deep nesting: a hostile or broken file must fail fast, not hang
//! `check-config` or the daemon's start. Then three passes over the same
//! text, so that one run reports as much as it can:
//! - yaml-rust2 indexes positions ([`Index`]);
//! - serde deserializes the wire types from a parsed value, through
//!   `serde_ignored` (every unknown key) and `serde_path_to_error` (where a
//!   type error is); after a type error the offending value is set aside and
//!   deserialization runs again, so every wrongly typed key is reported in
//!   one run, beside every unknown key;
//! - validation then checks the values all at once (only when the types were
//!   right, since a value set aside would read as missing).

use std::path::Path;

use super::Config;
use super::error::{Error, Errors};
use super::position::{Index, Pos};
use super::validate::{Reader, Sources, validate};
use super::wire::{Segment, WireConfig, known_keys, path_string};

/// The largest config file accepted. A full catalog of a few hundred models
/// is well under 100 KiB.
pub(crate) const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The deepest nesting of mappings and sequences accepted. The schema's
/// deepest value (`gpus.simulated[0].name`, `models[0].task_types[0]`) is at
/// depth 3; the slack is for flow style and future keys.
pub(crate) const MAX_DEPTH: usize = 32;

/// How many type errors one run reports before it stops looking.
const MAX_TYPE_ERRORS: usize = 64;

/// Loads and validates the config file at `path` for the node's daemon;
/// `node_name` may come from the process environment or the host name, and
/// `$(NAME)` references resolve from it.
pub fn load_file(path: &Path) -> Result<Config, Errors> {
    load_file_as(path, Reader::Daemon)
}

/// Loads and validates the daemons' config file at `path` for a reader off
/// the node (the scheduler extender): it is checked as strictly, but
/// node-local `$(NAME)` references (`runtime.client_endpoint`'s
/// `$(HOST_IP)`) are kept as written, since this process has not the
/// node's environment.
pub fn load_shared_file(path: &Path) -> Result<Config, Errors> {
    load_file_as(path, Reader::OffNode)
}

fn load_file_as(path: &Path, reader: Reader) -> Result<Config, Errors> {
    let source = path.display().to_string();
    let document_error = |message: String, pos: Option<Pos>| {
        let error = Error {
            path: String::new(),
            message,
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
        };
        Errors::new(source.clone(), vec![error])
    };
    let size = std::fs::metadata(path)
        .map_err(|e| document_error(format!("cannot read the config file: {e}"), None))?
        .len();
    if size > MAX_CONFIG_BYTES as u64 {
        return Err(document_error(too_large(size), None));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| document_error(format!("cannot read the config file: {e}"), None))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        document_error(
            format!(
                "is not UTF-8 text: byte 0x{:02x} at offset {at} cannot start or continue \
                 a UTF-8 character; save the file as UTF-8",
                bytes[at]
            ),
            Some(pos_of_offset(bytes, at)),
        )
    })?;
    let sources = Sources {
        env: &|name| std::env::var(name).ok(),
        hostname: &system_hostname,
        reader,
    };
    load_with(&text, &source, &sources)
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
        reader: Reader::Daemon,
    };
    load_with(text, source, &sources)
}

/// The kernel's host name, the last fallback for `node_name`.
fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
}

pub(crate) fn load_with(text: &str, source: &str, sources: &Sources<'_>) -> Result<Config, Errors> {
    if let Some(error) = shape_problem(text) {
        return Err(Errors::new(source, vec![error]));
    }
    let index = Index::build(text);
    let (wire, mut errors) = deserialize(text, &index);
    let config = match wire {
        None => None,
        Some(None) => {
            errors.push(Error {
                path: String::new(),
                message: "the config is empty; it needs at least a `models` catalog \
                          (see config/example.yaml)"
                    .to_owned(),
                line: None,
                column: None,
            });
            None
        }
        Some(Some(wire)) => match validate(wire, &index, sources) {
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

fn too_large(bytes: u64) -> String {
    format!(
        "is {bytes} bytes, more than the {MAX_CONFIG_BYTES} accepted; \
         a config is a few KiB (see config/example.yaml)"
    )
}

/// The first reason `text` must not reach the YAML parser behind serde:
/// too large, nested deeper than [`MAX_DEPTH`], or more than one document.
///
/// yaml-rust2's event parser stops on its own at its recursion limit and
/// this walk stops at [`MAX_DEPTH`], so it takes time linear in the text.
/// Its other syntax errors are left to serde_yaml, whose messages the rest
/// of the loader knows.
fn shape_problem(text: &str) -> Option<Error> {
    use yaml_rust2::parser::{Event, Parser};
    let at = |message: String, pos: Option<Pos>| Error {
        path: String::new(),
        message,
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
    };
    if text.len() > MAX_CONFIG_BYTES {
        return Some(at(too_large(text.len() as u64), None));
    }
    let mut parser = Parser::new_from_str(text);
    let (mut depth, mut documents) = (0usize, 0usize);
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(e) if e.info().contains("recursion limit") => {
                let pos = Pos::from_marker(*e.marker());
                return Some(at(deep(), Some(pos)));
            }
            Err(_) => return None,
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(at(deep(), Some(Pos::from_marker(mark))));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Some(at(
                        "a second YAML document starts here; a config file holds exactly one \
                         (remove the `---` line, or split the file)"
                            .to_owned(),
                        Some(Pos::from_marker(mark)),
                    ));
                }
            }
            Event::StreamEnd => return None,
            _ => {}
        }
    }
}

fn deep() -> String {
    format!(
        "is nested more than {MAX_DEPTH} levels deep; the config's deepest key is 3 levels \
         (see config/example.yaml)"
    )
}

/// The 1-based line and column of byte `offset` in `bytes`.
fn pos_of_offset(bytes: &[u8], offset: usize) -> Pos {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Pos {
        line: before.iter().filter(|b| **b == b'\n').count() + 1,
        column: String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1,
    }
}

/// The wire config (`None` inside for an empty document) and the errors met
/// on the way: a syntax error alone, or every unknown key and every type
/// error. The outer `None` means there is nothing to validate.
fn deserialize(text: &str, index: &Index) -> (Option<Option<WireConfig>>, Vec<Error>) {
    let mut value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(e) => return (None, vec![from_serde(&e, index)]),
    };
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let mut type_errors: Vec<Error> = Vec::new();
    let wire = loop {
        let mut seen: Vec<Vec<Segment>> = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| seen.push(segments(&path));
        let de = serde_ignored::Deserializer::new(&value, &mut record);
        let result = serde_path_to_error::deserialize::<_, Option<WireConfig>>(de);
        for path in seen {
            if !unknown.contains(&path) {
                unknown.push(path);
            }
        }
        match result {
            Ok(wire) => break Some(wire),
            Err(e) => {
                let path = path_segments(e.path());
                type_errors.push(type_error(&path, e.inner(), index));
                // Set the value aside and look further, unless it cannot be
                // (the document itself, or an item whose removal would
                // renumber its siblings) or enough was found.
                let removed =
                    matches!(path.last(), Some(Segment::Key(_))) && remove(&mut value, &path);
                if !removed || type_errors.len() >= MAX_TYPE_ERRORS {
                    break None;
                }
            }
        }
    };
    let mut errors: Vec<Error> = unknown.iter().map(|s| unknown_key(s, index)).collect();
    let wire = if type_errors.is_empty() { wire } else { None };
    errors.append(&mut type_errors);
    (wire, errors)
}

/// serde_path_to_error's path in our segments; enum variants are not keys.
fn path_segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|s| match s {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Enum { .. } | S::Unknown => None,
        })
        .collect()
}

/// Removes the mapping entry at `path` from `value`; whether it was there.
fn remove(value: &mut serde_yaml::Value, path: &[Segment]) -> bool {
    let Some((Segment::Key(last), parent)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parent {
        let next = match segment {
            Segment::Key(k) => node.get_mut(k.as_str()),
            Segment::Index(i) => node.get_mut(*i),
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    node.as_mapping_mut()
        .is_some_and(|m| m.remove(last.as_str()).is_some())
}

fn type_error(path: &[Segment], e: &serde_yaml::Error, index: &Index) -> Error {
    let path = path_string(path);
    let pos = index.value(&path);
    Error {
        message: e.to_string(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        path,
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
