//! A model's `config.pbtxt` (protobuf text format) as the JSON that Triton's
//! load API takes in its `config` parameter.
//!
//! Triton uses a `config` override *instead of* the repository's
//! config.pbtxt, not merged with it; so pinning a copy to a GPU means sending
//! the whole configuration with a new `instance_group`. The daemon reads the
//! repository's file, converts it, and replaces that one field.
//!
//! Text format has no marker for repeated fields or maps (a field written
//! once looks like a singular one), but protobuf's JSON form does, and
//! Triton parses it strictly. [`REPEATED`] and [`MAPS`] list those fields of
//! Triton's `ModelConfig` (triton-inference-server/common
//! `protobuf/model_config.proto`) by name: field names there mean the same
//! thing wherever they occur, with one exception handled by context (`input`
//! is a map inside `graph_spec`/`lower_bound`). A field missing from these
//! lists makes Triton refuse the load with its own error naming the field;
//! nothing is silently dropped.

use serde_json::{Map, Number, Value as Json};

/// Repeated fields of `ModelConfig` and the messages inside it.
const REPEATED: &[&str] = &[
    "input",
    "output",
    "batch_input",
    "batch_output",
    "instance_group",
    "model_warmup",
    "dims",
    "dim",
    "gpus",
    "profile",
    "secondary_devices",
    "resources",
    "target_name",
    "source_input",
    "op_library_filename",
    "shape",
    "preferred_batch_size",
    "step",
    "state",
    "initial_state",
    "metric_control",
    "control_input",
    "control",
    "agents",
    "versions",
    "int32_false_true",
    "fp32_false_true",
    "bool_false_true",
    "graph_spec",
    "gpu_execution_accelerator",
    "cpu_execution_accelerator",
    "buckets",
];

/// Map fields (written in text format as repeated `{ key: … value: … }`).
const MAPS: &[&str] = &[
    "parameters",
    "metric_tags",
    "cc_model_filenames",
    "priority_queue_policy",
    "inputs",
    "input_map",
    "output_map",
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config.pbtxt line {line}: {message}")]
pub struct Error {
    pub line: usize,
    pub message: String,
}

/// Converts the text of a config.pbtxt to a JSON `ModelConfig` object.
pub fn to_json(text: &str) -> Result<Map<String, Json>, Error> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    };
    let fields = p.fields(None)?;
    message_json(&fields, &[])
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    /// An enum name, `true`/`false`, `inf`/`nan`.
    Ident(String),
    Num(String),
    Message(Vec<Field>),
    List(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    value: Value,
    line: usize,
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Parser {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, Error> {
        Err(Error {
            line: self.line,
            message: message.into(),
        })
    }

    fn peek(&mut self) -> Option<char> {
        // Skip whitespace and `#` comments.
        while let Some(&c) = self.chars.get(self.pos) {
            if c == '\n' {
                self.line += 1;
                self.pos += 1;
            } else if c.is_whitespace() {
                self.pos += 1;
            } else if c == '#' {
                while self.chars.get(self.pos).is_some_and(|&c| c != '\n') {
                    self.pos += 1;
                }
            } else {
                return Some(c);
            }
        }
        None
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'))
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// Fields up to `close` (or the end of the text for the top level).
    fn fields(&mut self, close: Option<char>) -> Result<Vec<Field>, Error> {
        let mut fields = Vec::new();
        loop {
            match self.peek() {
                None if close.is_none() => return Ok(fields),
                None => return self.fail(format!("missing `{}`", close.unwrap_or('}'))),
                Some(c) if Some(c) == close => {
                    self.pos += 1;
                    return Ok(fields);
                }
                Some(c) if c.is_alphabetic() || c == '_' => {}
                Some(c) => return self.fail(format!("expected a field name, found `{c}`")),
            }
            let line = self.line;
            let name = self.word();
            let colon = self.eat(':');
            let value = match self.peek() {
                Some('{') | Some('<') => self.message()?,
                Some('[') => {
                    self.pos += 1;
                    let mut items = Vec::new();
                    if !self.eat(']') {
                        loop {
                            items.push(match self.peek() {
                                Some('{') | Some('<') => self.message()?,
                                _ => self.scalar()?,
                            });
                            if self.eat(']') {
                                break;
                            }
                            if !self.eat(',') {
                                return self.fail("expected `,` or `]` in a list");
                            }
                        }
                    }
                    Value::List(items)
                }
                _ if !colon => return self.fail(format!("expected `:` or `{{` after `{name}`")),
                _ => self.scalar()?,
            };
            fields.push(Field { name, value, line });
            let _ = self.eat(',') || self.eat(';');
        }
    }

    fn message(&mut self) -> Result<Value, Error> {
        let close = if self.eat('{') {
            '}'
        } else {
            self.pos += 1;
            '>'
        };
        Ok(Value::Message(self.fields(Some(close))?))
    }

    fn scalar(&mut self) -> Result<Value, Error> {
        match self.peek() {
            Some('"') | Some('\'') => {
                let mut s = String::new();
                // Adjacent strings concatenate.
                while let Some(q @ ('"' | '\'')) = self.peek() {
                    self.pos += 1;
                    self.string_body(q, &mut s)?;
                }
                Ok(Value::Str(s))
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '.' || c == '+' => {
                let w = self.word();
                let bare = w.trim_start_matches(['-', '+']);
                if bare.eq_ignore_ascii_case("inf") || bare.eq_ignore_ascii_case("infinity") {
                    Ok(Value::Ident(w))
                } else {
                    Ok(Value::Num(w))
                }
            }
            Some(c) if c.is_alphabetic() || c == '_' => Ok(Value::Ident(self.word())),
            Some(c) => self.fail(format!("expected a value, found `{c}`")),
            None => self.fail("expected a value, found the end of the file"),
        }
    }

    fn string_body(&mut self, quote: char, out: &mut String) -> Result<(), Error> {
        loop {
            let Some(&c) = self.chars.get(self.pos) else {
                return self.fail("unterminated string");
            };
            self.pos += 1;
            match c {
                '\n' => return self.fail("newline in a string"),
                c if c == quote => return Ok(()),
                '\\' => {
                    let Some(&e) = self.chars.get(self.pos) else {
                        return self.fail("unterminated string");
                    };
                    self.pos += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'x' => {
                            let hex: String = self.chars[self.pos..]
                                .iter()
                                .take(2)
                                .take_while(|c| c.is_ascii_hexdigit())
                                .collect();
                            self.pos += hex.len();
                            match u8::from_str_radix(&hex, 16) {
                                Ok(b) => out.push(char::from(b)),
                                Err(_) => return self.fail("bad \\x escape"),
                            }
                        }
                        '0'..='7' => {
                            let oct: String = self.chars[self.pos - 1..]
                                .iter()
                                .take(3)
                                .take_while(|c| ('0'..='7').contains(c))
                                .collect();
                            self.pos += oct.len() - 1;
                            match u8::from_str_radix(&oct, 8) {
                                Ok(b) => out.push(char::from(b)),
                                Err(_) => return self.fail("bad octal escape"),
                            }
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

fn is_map(path: &[&str], name: &str) -> bool {
    MAPS.contains(&name)
        || (name == "input" && matches!(path.last(), Some(&"graph_spec") | Some(&"lower_bound")))
}

fn message_json(fields: &[Field], path: &[&str]) -> Result<Map<String, Json>, Error> {
    let mut out = Map::new();
    let mut names: Vec<&str> = Vec::new();
    for f in fields {
        if !names.contains(&f.name.as_str()) {
            names.push(&f.name);
        }
    }
    for name in names {
        let mut values: Vec<(&Value, usize)> = Vec::new();
        for f in fields.iter().filter(|f| f.name == name) {
            match &f.value {
                Value::List(items) => values.extend(items.iter().map(|v| (v, f.line))),
                v => values.push((v, f.line)),
            }
        }
        let mut inner = path.to_vec();
        inner.push(name);
        let json = if is_map(path, name) {
            let mut map = Map::new();
            for (v, line) in values {
                let Value::Message(entry) = v else {
                    return Err(Error {
                        line,
                        message: format!("`{name}` is a map: write `{name} {{ key: … value: … }}`"),
                    });
                };
                let key = entry.iter().find(|f| f.name == "key").map(|f| &f.value);
                let key = match key {
                    Some(Value::Str(s)) | Some(Value::Num(s)) | Some(Value::Ident(s)) => s.clone(),
                    _ => {
                        return Err(Error {
                            line,
                            message: format!("a `{name}` entry needs a `key`"),
                        });
                    }
                };
                let value = match entry.iter().find(|f| f.name == "value") {
                    Some(f) => value_json(&f.value, &inner, f.line)?,
                    None => Json::Object(Map::new()),
                };
                map.insert(key, value);
            }
            Json::Object(map)
        } else if REPEATED.contains(&name) {
            Json::Array(
                values
                    .into_iter()
                    .map(|(v, line)| value_json(v, &inner, line))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            match values.as_slice() {
                [(v, line)] => value_json(v, &inner, *line)?,
                [] => continue,
                [_, (_, line), ..] => {
                    return Err(Error {
                        line: *line,
                        message: format!("`{name}` is given more than once"),
                    });
                }
            }
        };
        out.insert(name.to_owned(), json);
    }
    Ok(out)
}

fn value_json(v: &Value, path: &[&str], line: usize) -> Result<Json, Error> {
    Ok(match v {
        Value::Str(s) => Json::String(s.clone()),
        Value::Ident(s) => match s.as_str() {
            "true" | "True" | "t" => Json::Bool(true),
            "false" | "False" | "f" => Json::Bool(false),
            s if s.trim_start_matches(['-', '+']).eq_ignore_ascii_case("inf")
                || s.trim_start_matches(['-', '+'])
                    .eq_ignore_ascii_case("infinity") =>
            {
                Json::String(
                    if s.starts_with('-') {
                        "-Infinity"
                    } else {
                        "Infinity"
                    }
                    .into(),
                )
            }
            s if s.eq_ignore_ascii_case("nan") => Json::String("NaN".into()),
            // An enum value, by name.
            s => Json::String(s.to_owned()),
        },
        Value::Num(n) => number(n).ok_or_else(|| Error {
            line,
            message: format!("`{n}` is not a number"),
        })?,
        Value::Message(fields) => Json::Object(message_json(fields, path)?),
        Value::List(_) => {
            return Err(Error {
                line,
                message: "a list inside a list".into(),
            });
        }
    })
}

fn number(text: &str) -> Option<Json> {
    let t = text.trim_start_matches('+');
    let t = t
        .strip_suffix(['f', 'F'])
        .filter(|t| !t.starts_with("0x"))
        .unwrap_or(t);
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        let v = i64::from_str_radix(hex, 16).ok()?;
        return Some(Json::Number(Number::from(if neg { -v } else { v })));
    }
    if let Ok(v) = t.parse::<i64>() {
        return Some(Json::Number(Number::from(v)));
    }
    if let Ok(v) = t.parse::<u64>() {
        return Some(Json::Number(Number::from(v)));
    }
    t.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_typical_python_model_config_converts_with_lists_maps_and_enums() {
        let text = r#"
# The test model.
name: "tiny"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [1, 3, 32, 32] } ]
output { name: "OUTPUT", data_type: TYPE_FP32, dims: [ 1, 16 ] }
instance_group [ { kind: KIND_GPU count: 2 gpus: 0 } ]
parameters { key: "journal" value { string_value: "/tmp/j.txt" } }
parameters: { key: "EXECUTION_ENV_PATH", value: { string_value: '$$TRITON_MODEL_DIRECTORY/env.tar.gz' } }
dynamic_batching { preferred_batch_size: 4 max_queue_delay_microseconds: 100 }
optimization { cuda { graphs: true graph_spec [ { batch_size: 1 input { key: "x" value { dim: [ 3 ] } } } ] } }
"#;
        assert_eq!(
            Json::Object(to_json(text).expect("converts")),
            json!({
                "name": "tiny",
                "backend": "python",
                "max_batch_size": 0,
                "input": [{"name": "INPUT", "data_type": "TYPE_FP32", "dims": [1, 3, 32, 32]}],
                "output": [{"name": "OUTPUT", "data_type": "TYPE_FP32", "dims": [1, 16]}],
                "instance_group": [{"kind": "KIND_GPU", "count": 2, "gpus": [0]}],
                "parameters": {
                    "journal": {"string_value": "/tmp/j.txt"},
                    "EXECUTION_ENV_PATH": {"string_value": "$$TRITON_MODEL_DIRECTORY/env.tar.gz"}
                },
                "dynamic_batching": {"preferred_batch_size": [4], "max_queue_delay_microseconds": 100},
                "optimization": {"cuda": {"graphs": true, "graph_spec": [
                    {"batch_size": 1, "input": {"x": {"dim": [3]}}}
                ]}}
            })
        );
    }

    #[test]
    fn scalars_in_every_spelling_convert() {
        let text = "a: -1 b: 0x10 c: 1.5e3 d: 2.5f e: -inf f: nan g: 'x' \"y\" h: true i: <j: 1>";
        assert_eq!(
            Json::Object(to_json(text).expect("converts")),
            json!({"a": -1, "b": 16, "c": 1500.0, "d": 2.5, "e": "-Infinity", "f": "NaN",
                   "g": "xy", "h": true, "i": {"j": 1}})
        );
    }

    #[test]
    fn escapes_in_strings_are_decoded() {
        let text = r#"s: "a\"b\\c\n\101\x42""#;
        assert_eq!(to_json(text).expect("converts")["s"], json!("a\"b\\c\nAB"));
    }

    #[test]
    fn malformed_text_is_an_error_with_its_line() {
        for (text, line) in [
            ("name: \"x\"\ninput {\n", 3),
            ("a: 1\nb \"x\"", 2),
            ("a: 1\na: 2\n", 2),
            ("s: \"open\n", 1),
            ("parameters: 3", 1),
            ("x: [1, 2", 1),
        ] {
            let e = to_json(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
