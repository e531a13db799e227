//! Prometheus-style durations: `500ms`, `15s`, `5m`, `1h30m`, `1d`, `2w`, `1y` — whole
//! numbers, units from largest to smallest, each unit at most once (`0` alone is zero).
//! [`format()`] writes the same notation back.

use std::time::Duration;

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration did not parse; the message says how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration; write it like 500ms, 15s, 5m, 1h30m or 1d (units y, w, d, h, m, s, ms, largest first, each once)")]
    Invalid(String),
    #[error("`{0}` is too long a duration")]
    Overflow(String),
}

/// Parses a Prometheus duration.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    let overflow = || DurationError::Overflow(text.to_owned());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let (mut rest, mut next_unit, mut total) = (text, 0, 0u64);
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        if number.is_empty() {
            return Err(invalid());
        }
        let number: u64 = number.parse().map_err(|_| overflow())?;
        // Only units smaller than the last one; `ms` is not `m` then `s`.
        let unit = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .find(|(_, (name, _))| {
                after.starts_with(name) && !(*name == "m" && after.starts_with("ms"))
            });
        let (i, (name, millis)) = unit.ok_or_else(invalid)?;
        (next_unit, rest) = (i + 1, after.get(name.len()..).unwrap_or_default());
        total = number
            .checked_mul(*millis)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(overflow)?;
    }
    Ok(Duration::from_millis(total))
}

/// Writes `d` in the same notation (sub-millisecond parts dropped): `1h30m`, `500ms`, `0s`.
pub fn format(d: Duration) -> String {
    let mut left = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if left == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (name, millis) in UNITS {
        if left >= millis {
            out.push_str(&format!("{}{name}", left / millis));
            left %= millis;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let ms = |v: u64| Ok(Duration::from_millis(v));
        assert_eq!(parse("500ms"), ms(500));
        assert_eq!(parse("15s"), ms(15_000));
        assert_eq!(parse("5m"), ms(300_000));
        assert_eq!(parse("1h30m"), ms(5_400_000));
        assert_eq!(parse("1d"), ms(86_400_000));
        assert_eq!(parse("2w"), ms(14 * 86_400_000));
        assert_eq!(parse("1y"), ms(365 * 86_400_000));
        assert_eq!(parse("1m1s1ms"), ms(61_001));
        assert_eq!(parse("0"), ms(0));
        assert_eq!(parse("0s"), ms(0));
        assert_eq!(parse("90s"), ms(90_000));
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in [
            "", "15", "1.5s", "-5s", "5 s", " 5s", "5S", "1m1h", "1s1s", "s", "1x", "1h 30m",
            "5sec", "1ms1s", "+5s",
        ] {
            assert!(
                matches!(parse(bad), Err(DurationError::Invalid(_))),
                "{bad:?} should be invalid"
            );
        }
        assert!(matches!(
            parse("99999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse("999999999999y"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_back() {
        for text in ["500ms", "15s", "5m", "1h30m", "1d", "1w", "1h0m0s1ms"] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
