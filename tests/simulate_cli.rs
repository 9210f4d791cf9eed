//! `vision-node-daemon simulate`, run as an operator runs it.

use std::process::{Command, Output};

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout_of(args: &[&str]) -> String {
    let out = simulate(args);
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 report")
}

/// The report minus its wall-clock line(s).
fn without_timing(report: &str) -> String {
    report
        .lines()
        .filter(|l| !l.starts_with("engine:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_same_seed_prints_the_same_report_apart_from_the_timing_line() {
    let args = ["--seed", "7", "--duration", "2m"];
    let first = stdout_of(&args);
    let second = stdout_of(&args);
    assert_eq!(without_timing(&first), without_timing(&second));
    assert_eq!(
        first.lines().filter(|l| l.starts_with("engine:")).count(),
        1
    );
    for part in [
        "seed 7",
        "hit rate",
        "cold loads",
        "p99",
        "rejections",
        "× optimal",
    ] {
        assert!(first.contains(part), "missing {part:?} in:\n{first}");
    }
}

#[test]
fn another_seed_prints_another_report() {
    let a = stdout_of(&["--seed", "7", "--duration", "2m"]);
    let b = stdout_of(&["--seed", "8", "--duration", "2m"]);
    assert_ne!(without_timing(&a), without_timing(&b));
}

#[test]
fn json_output_parses_and_holds_the_headline_keys() {
    let out = stdout_of(&["--seed", "7", "--duration", "2m", "-o", "json"]);
    let value = json::parse(&out).unwrap_or_else(|e| panic!("{e} in:\n{out}"));
    let json::Value::Object(fields) = &value else {
        panic!("not an object: {out}");
    };
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "seed",
        "policy",
        "requests",
        "grants",
        "loads",
        "queue_wait_ms",
        "rejections",
        "bound",
        "engine",
    ] {
        assert!(keys.contains(&key), "missing {key:?} in {keys:?}");
    }
    assert_eq!(value.get("seed"), Some(&json::Value::Number(7.0)));
    let ratio = value
        .get("bound")
        .and_then(|b| b.get("load_ms"))
        .and_then(|c| c.get("ratio"));
    assert!(
        matches!(ratio, Some(json::Value::Number(r)) if *r >= 1.0),
        "ratio {ratio:?}"
    );
}

#[test]
fn a_bad_flag_value_fails_with_the_flag_named() {
    let out = simulate(&["--rate", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--rate"), "stderr: {stderr}");
    let out = simulate(&["--policy", "fifo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("greedy-dual-size"));
}

/// Just enough JSON to check the report: a strict recursive-descent parser.
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
    }

    pub fn parse(s: &str) -> Result<Value, String> {
        let mut p = Parser {
            s: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing input at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.s.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at byte {}", c as char, self.i))
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'{') => self.object(),
                Some(b'[') => self.array(),
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
                _ => Err(format!("unexpected input at byte {}", self.i)),
            }
        }

        fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
            if self.s[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(v)
            } else {
                Err(format!("bad literal at byte {}", self.i))
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.i;
            while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                self.i += 1;
            }
            let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            text.parse()
                .map(Value::Number)
                .map_err(|_| format!("bad number {text:?}"))
        }

        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out = String::new();
            loop {
                let rest = std::str::from_utf8(&self.s[self.i..]).map_err(|e| e.to_string())?;
                let c = rest.chars().next().ok_or("unterminated string")?;
                self.i += c.len_utf8();
                match c {
                    '"' => return Ok(out),
                    '\\' => {
                        let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                        self.i += 1;
                        match e {
                            b'"' | b'\\' | b'/' => out.push(e as char),
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'u' => {
                                let hex = std::str::from_utf8(&self.s[self.i..self.i + 4])
                                    .map_err(|e| e.to_string())?;
                                let code =
                                    u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                out.push(char::from_u32(code).ok_or("bad \\u escape")?);
                                self.i += 4;
                            }
                            _ => return Err(format!("bad escape at byte {}", self.i)),
                        }
                    }
                    c if (c as u32) < 0x20 => return Err("control character in string".into()),
                    c => out.push(c),
                }
            }
        }

        fn array(&mut self) -> Result<Value, String> {
            self.eat(b'[')?;
            let mut items = Vec::new();
            self.ws();
            if self.s.get(self.i) == Some(&b']') {
                self.i += 1;
                return Ok(Value::Array(items));
            }
            loop {
                items.push(self.value()?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    _ => return Err(format!("expected , or ] at byte {}", self.i)),
                }
            }
        }

        fn object(&mut self) -> Result<Value, String> {
            self.eat(b'{')?;
            let mut fields: Vec<(String, Value)> = Vec::new();
            self.ws();
            if self.s.get(self.i) == Some(&b'}') {
                self.i += 1;
                return Ok(Value::Object(fields));
            }
            loop {
                self.ws();
                let key = self.string()?;
                if fields.iter().any(|(k, _)| *k == key) {
                    return Err(format!("duplicate key {key:?}"));
                }
                self.eat(b':')?;
                fields.push((key, self.value()?));
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(Value::Object(fields));
                    }
                    _ => return Err(format!("expected , or }} at byte {}", self.i)),
                }
            }
        }
    }
}

#[test]
fn plot_draws_the_run_into_an_svg() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("run.svg");
    let report = stdout_of(&[
        "--seed",
        "3",
        "--duration",
        "5m",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(report.contains("hit rate"), "the report is still printed");
    let svg = std::fs::read_to_string(&svg).expect("the plot was written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for title in [
        "simulate --seed 3 --duration 5m",
        "Queue depth",
        "Warm hit rate",
        "Pool use per GPU",
        "Requests per model",
        "GPU 1",
        "sd3b",
    ] {
        assert!(svg.contains(title), "{title} missing from the plot");
    }
    // The series are sampled over the run: lines of many points (queue,
    // waiting on a load, hit rate, a pool line per GPU).
    let long_lines = svg
        .split("<polyline")
        .skip(1)
        .filter_map(|l| l.split("points=\"").nth(1)?.split('"').next())
        .filter(|points| points.split(' ').count() > 50)
        .count();
    assert_eq!(long_lines, 5, "{svg}");
}

#[test]
fn under_o_json_a_failure_is_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "node_name: n\nmodels: []\n").unwrap();
    let out = simulate(&["--config", bad.to_str().unwrap(), "-o", "json"]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("models"),
        "{v}"
    );
}
