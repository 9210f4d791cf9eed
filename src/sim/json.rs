//! `simulate --json`: the report through a tiny JSON writer.
//!
//! The report is a few dozen numbers and names; a value tree and forty lines
//! of printing cover it without a serde_json dependency. Output is
//! deterministic (keys in insertion order) and pretty: containers of scalars
//! sit on one line, so the timing object is one line a test can filter.

use std::fmt::Write;
use std::time::Duration;

use super::policy_name;
use super::report::{Percentiles, Report};

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    U(u64),
    /// A number printed with this many decimals (`null` if not finite).
    F(f64, usize),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(&'static str, Value)>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn opt_f(x: Option<f64>, decimals: usize) -> Value {
        x.map_or(Value::Null, |x| Value::F(x, decimals))
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Value::Arr(_) | Value::Obj(_))
    }

    /// The value as pretty JSON, ending in a newline.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Value::Null => out.push_str("null"),
            Value::U(n) => {
                let _ = write!(out, "{n}");
            }
            Value::F(x, d) if x.is_finite() => {
                let _ = write!(out, "{x:.d$}");
            }
            Value::F(..) => out.push_str("null"),
            Value::Str(s) => write_string(out, s),
            Value::Arr(items) => {
                let flat = items.iter().all(Value::is_scalar);
                container(out, indent, '[', ']', flat, items.iter().map(|v| (None, v)));
            }
            Value::Obj(fields) => {
                let flat = fields.iter().all(|(_, v)| v.is_scalar());
                let entries = fields.iter().map(|(k, v)| (Some(*k), v));
                container(out, indent, '{', '}', flat, entries);
            }
        }
    }
}

fn container<'a>(
    out: &mut String,
    indent: usize,
    open: char,
    close: char,
    flat: bool,
    entries: impl ExactSizeIterator<Item = (Option<&'a str>, &'a Value)>,
) {
    out.push(open);
    if entries.len() == 0 {
        out.push(close);
        return;
    }
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if flat {
            if i > 0 {
                out.push(' ');
            }
        } else {
            out.push('\n');
            out.push_str(&"  ".repeat(indent + 1));
        }
        if let Some(k) = key {
            write_string(out, k);
            out.push_str(": ");
        }
        value.write(out, indent + 1);
    }
    if !flat {
        out.push('\n');
        out.push_str(&"  ".repeat(indent));
    }
    out.push(close);
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Report {
    /// The report as JSON (one object; timing in the one-line `"engine"` key).
    pub fn json(&self) -> String {
        let o = &self.options;
        let ms = |d: Duration| Value::U(d.as_millis() as u64);
        let wait = self.wait_ms.map_or(Value::Null, |w| {
            Value::Obj(vec![
                ("p50", Value::U(w.p50)),
                ("p99", Value::U(w.p99)),
                ("max", Value::U(w.max)),
            ])
        });
        let mut bound = vec![("capacity_mib", Value::U(self.capacity_mib))];
        bound.extend(self.comparisons.iter().map(|c| {
            let v = Value::Obj(vec![
                ("policy", Value::U(c.policy)),
                ("compulsory", Value::U(c.bound.compulsory)),
                ("lower_bound", Value::U(c.bound.value)),
                ("ratio", Value::opt_f(c.ratio(), 4)),
            ]);
            (c.cost.key(), v)
        }));
        let v = Value::Obj(vec![
            ("seed", Value::U(o.seed)),
            ("policy", Value::str(policy_name(self.policy))),
            ("duration_ms", ms(o.duration)),
            ("rate_per_s", Value::F(o.rate_per_s, 3)),
            ("zipf", Value::F(o.zipf, 3)),
            ("pods", Value::U(o.pods.into())),
            ("slots", Value::U(o.slots.into())),
            ("timeout_ms", ms(self.timeout)),
            ("lease_ttl_ms", ms(self.lease_ttl)),
            (
                "models",
                Value::Obj(vec![
                    ("base", Value::U(self.base_models as u64)),
                    ("variants", Value::U(o.variants.into())),
                    ("total", Value::U(self.models as u64)),
                ]),
            ),
            (
                "gpus",
                Value::Arr(
                    self.gpus
                        .iter()
                        .map(|(name, total)| {
                            Value::Obj(vec![
                                ("name", Value::str(name)),
                                ("total_mib", Value::U(*total)),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("reserve_mib", Value::U(self.reserve_mib)),
            ("usable_mib", Value::U(self.capacity_mib)),
            ("requests", Value::U(self.requests)),
            ("simulated_ms", Value::U(self.simulated_ms)),
            (
                "grants",
                Value::Obj(vec![
                    ("total", Value::U(self.granted())),
                    ("warm", Value::U(self.granted_warm)),
                    ("cold", Value::U(self.granted_cold)),
                    ("hit_rate", Value::opt_f(self.hit_rate(), 6)),
                ]),
            ),
            (
                "loads",
                Value::Obj(vec![
                    ("cold_loads", Value::U(self.cold_loads)),
                    ("loaded_mib", Value::U(self.loaded_mib)),
                    ("load_seconds", Value::F(self.load_ms as f64 / 1000.0, 3)),
                    ("evictions", Value::U(self.counters.evictions)),
                    ("evicted_mib", Value::U(self.counters.evicted_mib)),
                    ("late_results_ignored", Value::U(self.late_load_results)),
                    ("unused", Value::U(self.unused_loads)),
                    ("duplicates", Value::U(self.duplicate_loads)),
                ]),
            ),
            ("queue_wait_ms", wait),
            (
                "by_model",
                Value::Arr(
                    self.by_model
                        .iter()
                        .map(|m| {
                            let w = |f: fn(&Percentiles) -> u64| {
                                m.wait_ms.as_ref().map_or(Value::Null, |p| Value::U(f(p)))
                            };
                            Value::Obj(vec![
                                ("name", Value::str(&m.name)),
                                ("requests", Value::U(m.requests)),
                                ("granted", Value::U(m.granted)),
                                ("warm", Value::U(m.warm)),
                                ("wait_p50_ms", w(|p| p.p50)),
                                ("wait_p99_ms", w(|p| p.p99)),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("rejected", Value::U(self.refused + self.rejected)),
            (
                "rejections",
                Value::Obj(
                    self.rejections()
                        .into_iter()
                        .map(|(o, n)| (o.as_str(), Value::U(n)))
                        .collect(),
                ),
            ),
            ("cancelled", Value::U(self.cancelled)),
            ("keep_alives", Value::U(self.keep_alives)),
            ("leases_expired", Value::U(self.expired)),
            (
                "faults",
                Value::Obj(vec![
                    ("per_hour", Value::F(o.faults_per_hour, 3)),
                    ("duration_ms", ms(o.fault_duration)),
                    ("injected", Value::U(self.faults)),
                    ("skipped", Value::U(self.faults_skipped)),
                    ("leases_revoked", Value::U(self.revoked)),
                ]),
            ),
            (
                "anomalies",
                Value::Arr(self.anomalies.iter().map(Value::str).collect()),
            ),
            ("bound", Value::Obj(bound)),
            (
                "engine",
                Value::Obj(vec![
                    ("calls", Value::U(self.engine_calls)),
                    ("seconds", Value::F(self.engine_time.as_secs_f64(), 6)),
                    (
                        "decisions_per_second",
                        Value::opt_f(self.decisions_per_second(), 0),
                    ),
                    ("wall_seconds", Value::F(self.wall_time.as_secs_f64(), 6)),
                ]),
            ),
        ]);
        v.to_pretty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let v = Value::str("a \"q\" \\ \n\u{1}");
        assert_eq!(v.to_pretty(), "\"a \\\"q\\\" \\\\ \\n\\u0001\"\n");
    }

    #[test]
    fn scalar_containers_sit_on_one_line_and_nested_ones_indent() {
        let v = Value::Obj(vec![
            ("a", Value::U(1)),
            (
                "b",
                Value::Obj(vec![("x", Value::F(0.5, 2)), ("y", Value::Null)]),
            ),
            ("c", Value::Arr(vec![])),
            ("d", Value::F(f64::NAN, 1)),
        ]);
        assert_eq!(
            v.to_pretty(),
            "{\n  \"a\": 1,\n  \"b\": {\"x\": 0.50, \"y\": null},\n  \"c\": [],\n  \"d\": null\n}\n"
        );
    }
}
