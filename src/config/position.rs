//! Key path → (line, column) index of a YAML document.
//!
//! serde gives us values, not where they were written; semantic checks run
//! after deserialization, when the positions are gone. So the same text is
//! walked once more with yaml-rust2's event parser, and every key and value is
//! recorded under its path (`models[2].weights_mib`), for errors to point at
//! the line an operator must edit.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column, as a text editor shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// yaml-rust2 0.10 markers: the line is 1-based, the column 0-based
    /// (despite its doc comment); checked by a test below.
    pub(crate) fn from_marker(mark: Marker) -> Self {
        Pos {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// Where each key and value of one document starts.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Start of each value (scalar, sequence, or mapping), by path; the root
    /// document is the empty path.
    values: HashMap<String, Pos>,
    /// Start of each mapping key, by the path of the value it introduces.
    keys: HashMap<String, Pos>,
}

impl Index {
    /// Indexes `text`. On a syntax error the index holds what came before it;
    /// the syntax error itself is reported by serde_yaml.
    pub(crate) fn build(text: &str) -> Self {
        let mut builder = Builder::default();
        // Only the first document: serde_yaml rejects multi-document input.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        builder.index
    }

    /// Whether `path` names a value in the document.
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }

    /// Where the value at `path` starts.
    pub(crate) fn value(&self, path: &str) -> Option<Pos> {
        self.values.get(path).copied()
    }

    /// Where the key introducing `path` starts.
    pub(crate) fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied()
    }

    /// The value at `path`, else its nearest enclosing value: a key that was
    /// left out (and took its default) is reported at the mapping it belongs
    /// in. Never the document root, which would point at line 1 for no reason.
    pub(crate) fn locate(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        while !path.is_empty() {
            if let Some(pos) = self.value(path) {
                return Some(pos);
            }
            path = parent(path);
        }
        None
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
fn parent(path: &str) -> &str {
    if path.ends_with(']')
        && let Some(open) = path.rfind('[')
    {
        return &path[..open];
    }
    match path.rfind('.') {
        Some(dot) => &path[..dot],
        None => "",
    }
}

/// The path of `key` inside the mapping at `parent`.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// An open collection while walking the events.
struct Frame {
    path: String,
    kind: FrameKind,
    /// The collection is itself a mapping key (a complex key, rare).
    is_key: bool,
}

enum FrameKind {
    /// `key`: `None` while the next node is a key, else the path of the value
    /// that follows. `first_key` is whether no key has been seen yet.
    Map {
        key: Option<String>,
        first_key: bool,
    },
    Seq {
        next: usize,
    },
}

/// What the next node in the event stream is.
enum Slot {
    /// A key of the mapping at this path.
    Key(String),
    /// A value at this path.
    Value(String),
}

#[derive(Default)]
struct Builder {
    index: Index,
    stack: Vec<Frame>,
}

impl Builder {
    fn slot(&self) -> Slot {
        match self.stack.last() {
            None => Slot::Value(String::new()),
            Some(frame) => match &frame.kind {
                FrameKind::Map { key: None, .. } => Slot::Key(frame.path.clone()),
                FrameKind::Map { key: Some(p), .. } => Slot::Value(p.clone()),
                FrameKind::Seq { next } => Slot::Value(format!("{}[{next}]", frame.path)),
            },
        }
    }

    fn leaf(&mut self, text: &str, pos: Pos) {
        match self.slot() {
            Slot::Key(map_path) => {
                let path = join(&map_path, text);
                self.note_key(pos);
                self.index.keys.insert(path.clone(), pos);
                self.set_key(path);
            }
            Slot::Value(path) => {
                self.index.values.insert(path, pos);
                self.advance();
            }
        }
    }

    fn open(&mut self, pos: Pos, kind: FrameKind) {
        let (path, is_key) = match self.slot() {
            Slot::Key(map_path) => {
                self.note_key(pos);
                (join(&map_path, "?"), true)
            }
            Slot::Value(path) => {
                self.index.values.insert(path.clone(), pos);
                (path, false)
            }
        };
        self.stack.push(Frame { path, kind, is_key });
    }

    fn close(&mut self) {
        if let Some(frame) = self.stack.pop() {
            if frame.is_key {
                self.set_key(frame.path);
            } else {
                self.advance();
            }
        }
    }

    /// A block mapping's start event is marked after its first key (at the
    /// `:`), so the first key's position, when earlier, is where the mapping
    /// starts. A flow mapping's `{` comes first and is kept.
    fn note_key(&mut self, pos: Pos) {
        if let Some(frame) = self.stack.last_mut()
            && let FrameKind::Map { first_key, .. } = &mut frame.kind
            && *first_key
        {
            *first_key = false;
            let start = self.index.values.entry(frame.path.clone()).or_insert(pos);
            *start = (*start).min(pos);
        }
    }

    fn set_key(&mut self, path: String) {
        if let Some(Frame {
            kind: FrameKind::Map { key, .. },
            ..
        }) = self.stack.last_mut()
        {
            *key = Some(path);
        }
    }

    /// A value is complete: the mapping expects a key, the sequence its next
    /// item.
    fn advance(&mut self) {
        match self.stack.last_mut().map(|frame| &mut frame.kind) {
            Some(FrameKind::Map { key, .. }) => *key = None,
            Some(FrameKind::Seq { next }) => *next += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::Scalar(text, ..) => self.leaf(&text, pos),
            Event::Alias(_) => self.leaf("*", pos),
            Event::MappingStart(..) => self.open(
                pos,
                FrameKind::Map {
                    key: None,
                    first_key: true,
                },
            ),
            Event::SequenceStart(..) => self.open(pos, FrameKind::Seq { next: 0 }),
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Pos> {
        Some(Pos { line, column })
    }

    const DOC: &str = "\
node_name: n1
gpus:
  reserve_mib: 512
  simulated:
    - { name: \"L4\", memory_mib: 24576 }
    - name: A100
      memory_mib: 81920
models:
  - name: yolo
    task_types: [detect, segment]
";

    #[test]
    fn scalar_values_are_indexed_at_their_first_character() {
        let index = Index::build(DOC);
        assert_eq!(index.value("node_name"), at(1, 12));
        assert_eq!(index.value("gpus.reserve_mib"), at(3, 16));
        assert_eq!(index.value("models[0].name"), at(9, 11));
    }

    #[test]
    fn keys_are_indexed_at_their_first_character() {
        let index = Index::build(DOC);
        assert_eq!(index.key("node_name"), at(1, 1));
        assert_eq!(index.key("gpus.reserve_mib"), at(3, 3));
        assert_eq!(index.key("gpus.simulated[1].memory_mib"), at(7, 7));
    }

    #[test]
    fn flow_collections_are_indexed_inside_their_brackets() {
        let index = Index::build(DOC);
        assert_eq!(index.value("gpus.simulated[0]"), at(5, 7));
        assert_eq!(index.value("gpus.simulated[0].name"), at(5, 15));
        assert_eq!(index.value("gpus.simulated[0].memory_mib"), at(5, 33));
        assert_eq!(index.value("models[0].task_types[1]"), at(10, 26));
    }

    #[test]
    fn a_block_mapping_starts_at_its_first_key() {
        let index = Index::build(DOC);
        assert_eq!(index.value("gpus"), at(3, 3));
        assert_eq!(index.value("gpus.simulated[1]"), at(6, 7));
        assert_eq!(index.value("models[0]"), at(9, 5));
    }

    #[test]
    fn a_block_sequence_starts_at_its_first_dash() {
        assert_eq!(Index::build(DOC).value("gpus.simulated"), at(5, 5));
    }

    #[test]
    fn locate_falls_back_to_the_enclosing_value_but_not_the_root() {
        let index = Index::build(DOC);
        assert_eq!(index.locate("models[0].weights_mib"), at(9, 5));
        assert_eq!(index.locate("gpus.simulated[1].count"), at(6, 7));
        assert_eq!(index.locate("admission.lease_ttl"), None);
    }

    #[test]
    fn a_syntax_error_keeps_what_was_indexed_before_it() {
        let index = Index::build("a: 1\nb: [\n");
        assert_eq!(index.value("a"), at(1, 4));
        assert!(!index.contains("c"));
    }

    #[test]
    fn parent_strips_one_segment() {
        assert_eq!(parent("a.b[2].c"), "a.b[2]");
        assert_eq!(parent("a.b[2]"), "a.b");
        assert_eq!(parent("a"), "");
    }
}
