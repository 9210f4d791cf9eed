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

/// Parses a sequence of `<integer><unit>` parts, summed: `1m30s` is 90 s.
///
/// Units: `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`. No sign, no spaces, no
/// fractions (`1.5s` is spelled `1s500ms`), and every number needs a unit.
pub fn parse(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("empty duration; write e.g. `30s`".to_owned());
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration: expected a number at `{rest}`; write e.g. `30s` or `1m30s`"
            ));
        }
        let too_long = || format!("`{s}` is too long a duration");
        let number: u128 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos = match unit {
            "" if digits == s.len() => {
                return Err(format!(
                    "`{s}` has no unit; write e.g. `{s}s` (units: {UNIT_LIST})"
                ));
            }
            "" => {
                return Err(format!(
                    "`{s}` has no unit after `{number}`; write e.g. `{number}s` (units: {UNIT_LIST})"
                ));
            }
            "µs" => 1_000,
            _ => match UNITS.iter().find(|(name, _)| *name == unit) {
                Some((_, nanos)) => *nanos,
                None => {
                    return Err(format!(
                        "`{s}` has an unknown unit `{unit}` (units: {UNIT_LIST})"
                    ));
                }
            },
        };
        total = number
            .checked_mul(nanos)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(too_long)?;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("`{s}` is too long a duration"))?;
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
        let e = parse("30").unwrap_err();
        assert!(e.contains("no unit") && e.contains("`30s`"), "{e}");
        assert!(parse("1m30").unwrap_err().contains("no unit after `30`"));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("5x").unwrap_err().contains("unknown unit `x`"));
        assert!(parse("-5s").unwrap_err().contains("expected a number"));
        assert!(parse("1.5s").unwrap_err().contains("unknown unit `.`"));
        assert!(parse("5 s").unwrap_err().contains("unknown unit ` s`"));
        assert!(parse("s").unwrap_err().contains("expected a number"));
    }

    #[test]
    fn durations_beyond_the_range_of_duration_are_rejected() {
        let huge = format!("{}h", u64::MAX);
        assert!(parse(&huge).unwrap_err().contains("too long"));
        let digits = "9".repeat(60) + "s";
        assert!(parse(&digits).unwrap_err().contains("too long"));
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
