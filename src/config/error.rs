//! Configuration errors that name the key path and the position.
//!
//! An operator fixing a config file wants every problem at once, each pointing
//! at the line to edit; so loading collects [`Error`]s instead of stopping at
//! the first, and [`Errors`] prints them one per line under a header naming the
//! file.

use std::fmt;

/// One problem in a configuration file.
///
/// `path` is the YAML key path in `a.b[2].c` form (empty for problems with the
/// document as a whole, such as a syntax error); `line`/`column` are 1-based,
/// as a text editor shows them, and `None` where no position is known (a key
/// that was left out, a value taken from the environment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}{}", PathPrefix(.path), At(*.line, *.column))]
pub struct Error {
    pub path: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Every problem found in one configuration source, in file order.
///
/// Displays as a header (`config/x.yaml: 2 errors`) followed by one line per
/// error, each ending in a newline, so `eprint!("{errors}")` is the whole
/// report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors {
    /// Where the text came from (a file path, or a name for embedded text).
    source_name: String,
    errors: Vec<Error>,
}

impl Errors {
    pub fn new(source_name: impl Into<String>, errors: Vec<Error>) -> Self {
        Self {
            source_name: source_name.into(),
            errors,
        }
    }

    /// The file path (or name) the errors were found in.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The individual errors, in file order (position-less ones last).
    pub fn errors(&self) -> &[Error] {
        &self.errors
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        let noun = if n == 1 { "error" } else { "errors" };
        writeln!(f, "{}: {n} {noun}", self.source_name)?;
        for error in &self.errors {
            writeln!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// `path: ` before the message, or nothing for document-level errors.
struct PathPrefix<'a>(&'a str);

impl fmt::Display for PathPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

/// ` (line L, column C)` after the message, or nothing when unknown.
struct At(Option<usize>, Option<usize>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(column)) => write!(f, " (line {line}, column {column})"),
            (Some(line), None) => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: &str, line: Option<usize>, column: Option<usize>) -> Error {
        Error {
            path: path.into(),
            message: "must be > 0".into(),
            line,
            column,
        }
    }

    #[test]
    fn an_error_with_a_position_prints_path_message_and_position() {
        let e = error("models[2].weights_mib", Some(31), Some(18));
        assert_eq!(
            e.to_string(),
            "models[2].weights_mib: must be > 0 (line 31, column 18)"
        );
    }

    #[test]
    fn an_error_without_a_position_prints_no_parentheses() {
        assert_eq!(
            error("node_name", None, None).to_string(),
            "node_name: must be > 0"
        );
    }

    #[test]
    fn a_document_level_error_prints_no_path_prefix() {
        assert_eq!(
            error("", Some(2), Some(1)).to_string(),
            "must be > 0 (line 2, column 1)"
        );
    }

    #[test]
    fn errors_print_the_source_once_then_one_error_per_line() {
        let errors = Errors::new(
            "config/x.yaml",
            vec![error("a", Some(1), Some(4)), error("b", None, None)],
        );
        assert_eq!(
            errors.to_string(),
            "config/x.yaml: 2 errors\na: must be > 0 (line 1, column 4)\nb: must be > 0\n"
        );
    }

    #[test]
    fn a_single_error_is_counted_in_the_singular() {
        let errors = Errors::new("x.yaml", vec![error("a", None, None)]);
        assert!(errors.to_string().starts_with("x.yaml: 1 error\n"));
    }
}
