//! Human-readable durations: `500ms`, `30s`, `2m`, `1h`, `1m30s`.
//!
//! One syntax for the config file and for `visionctl --timeout 5s`, so an
//! operator never has to guess whether a bare number means seconds or
//! milliseconds: a unit is always required. [`format()`] prints the form
//! [`parse`] reads back exactly, which is what makes the effective config
//! (`check-config`) re-loadable.

use std::time::Duration;

/// Units, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

const UNIT_LIST: &str = "h, m, s, ms, us, ns";

/// Why a duration did not parse; each says how to write it right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write e.g. `30s`")]
    Empty,
    #[error("`{text}` is not a duration: expected a number at `{at}`; write e.g. `30s` or `1m30s`")]
    ExpectedNumber { text: String, at: String },
    #[error("`{0}` has no unit; write e.g. `{0}s` (units: {UNIT_LIST})")]
    NoUnit(String),
    #[error("`{text}` has no unit after `{number}`; write e.g. `{number}s` (units: {UNIT_LIST})")]
    NoUnitAfter { text: String, number: u128 },
    #[error("`{text}` has an unknown unit `{unit}` (units: {UNIT_LIST})")]
    UnknownUnit { text: String, unit: String },
    #[error("`{0}` is too long a duration")]
    TooLong(String),
}

/// Parses a sequence of `<integer><unit>` parts, summed: `1m30s` is 90 s.
///
/// Units: `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`. No sign, no spaces, no
/// fractions (`1.5s` is spelled `1s500ms`), and every number needs a unit.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let too_long = || DurationError::TooLong(s.to_owned());
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::ExpectedNumber {
                text: s.to_owned(),
                at: rest.to_owned(),
            });
        }
        let number: u128 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos = match unit {
            "" if digits == s.len() => return Err(DurationError::NoUnit(s.to_owned())),
            "" => {
                return Err(DurationError::NoUnitAfter {
                    text: s.to_owned(),
                    number,
                });
            }
            "µs" => 1_000,
            _ => match UNITS.iter().find(|(name, _)| *name == unit) {
                Some((_, nanos)) => *nanos,
                None => {
                    return Err(DurationError::UnknownUnit {
                        text: s.to_owned(),
                        unit: unit.to_owned(),
                    });
                }
            },
        };
        total = number
            .checked_mul(nanos)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(too_long)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long())?;
    // The remainder is below 1e9, so it always fits a u32.
    let subsec = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Formats `d` as the shortest `1h2m3s4ms`-style string; zero is `0s`.
///
/// `parse(&format(d)) == Ok(d)` for every `Duration`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut left = d.as_nanos();
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        let count = left / nanos;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
            left %= nanos;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn single_units_parse_to_their_length() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("9ns"), Ok(Duration::from_nanos(9)));
    }

    #[test]
    fn combined_parts_are_summed() {
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h1m1s1ms"), Ok(Duration::from_millis(3_661_001)));
    }

    #[test]
    fn a_bare_number_is_rejected_with_a_hint_to_add_a_unit() {
        let e = parse("30").unwrap_err().to_string();
        assert!(e.contains("no unit") && e.contains("`30s`"), "{e}");
        assert!(err("1m30").contains("no unit after `30`"));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        assert!(err("").contains("empty"));
        assert!(err("5x").contains("unknown unit `x`"));
        assert!(err("-5s").contains("expected a number"));
        assert!(err("1.5s").contains("unknown unit `.`"));
        assert!(err("5 s").contains("unknown unit ` s`"));
        assert!(err("s").contains("expected a number"));
    }

    #[test]
    fn durations_beyond_the_range_of_duration_are_rejected() {
        let huge = format!("{}h", u64::MAX);
        assert!(err(&huge).contains("too long"));
        let digits = "9".repeat(60) + "s";
        assert!(err(&digits).contains("too long"));
    }

    #[test]
    fn format_prints_the_largest_units_first_and_skips_zero_parts() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_secs(3601)), "1h1s");
        assert_eq!(format(Duration::new(0, 1_001)), "1us1ns");
    }

    proptest! {
        #[test]
        fn every_duration_survives_format_then_parse(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn whole_milliseconds_survive_format_then_parse(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
