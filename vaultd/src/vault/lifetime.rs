//! Databunker's `expiration` values, one reading for every route that takes one as a
//! lifetime (the expiration flow, sessions, shared records): when something ends, at most
//! the vault's maximum for that kind of thing after it starts.
//!
//! A value is a count with a unit (`30s`, `12h`, `30d`, `6m` — months of 31 days, as in
//! Databunker), a bare count of seconds (`"3600"`, `3600`, `3600.5`), or a Unix time in
//! seconds (any count larger than the current time, as Databunker reads it). Absent,
//! empty or zero asks for the maximum; anything longer is cut to it.

use std::time::Duration;

use serde_json::Value;

use crate::error::{VaultError, VaultResult};

const MESSAGE: &str =
    "expiration must be a duration like 30s, 12h, 30d or 6m (months), a number of seconds, or a Unix time";

/// What an `expiration` value asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Requested {
    /// As long as the vault allows.
    Maximum,
    /// This many seconds from the start.
    Seconds(u64),
    /// Until this Unix time, in seconds.
    Until(u64),
}

/// Reads an `expiration` value at `now_secs`. Bad values are refused, so callers read it
/// before anything else happens.
pub(super) fn parse(expiration: Option<&Value>, now_secs: u64) -> VaultResult<Requested> {
    let count = match expiration {
        None | Some(Value::Null) => 0,
        Some(Value::String(text)) => parse_text(text).ok_or_else(|| VaultError::bad_request(MESSAGE))?,
        Some(Value::Number(number)) => match (number.as_u64(), number.as_f64()) {
            (Some(count), _) => count,
            // Databunker truncates fractions (a script's `Date.now() / 1000 + 3600`).
            (None, Some(float)) if float.is_finite() && float >= 0.0 => float as u64,
            _ => return Err(VaultError::bad_request(MESSAGE)),
        },
        Some(_) => return Err(VaultError::bad_request(MESSAGE)),
    };
    Ok(match count {
        0 => Requested::Maximum,
        count if count > now_secs => Requested::Until(count),
        count => Requested::Seconds(count),
    })
}

impl Requested {
    /// When something that starts at `start_ms` ends, in milliseconds since the Unix
    /// epoch: at most `max` after its start.
    pub(super) fn end_ms(self, max: Duration, start_ms: u64) -> u64 {
        let latest = start_ms.saturating_add(u64::try_from(max.as_millis()).unwrap_or(u64::MAX));
        let end = match self {
            Requested::Maximum => latest,
            Requested::Seconds(seconds) => start_ms.saturating_add(seconds.saturating_mul(1000)),
            Requested::Until(unix) => unix.saturating_mul(1000),
        };
        end.min(latest)
    }
}

/// The count in `30d`, `12h`, `6m`, `30s` or `3600`, in seconds; 0 for an empty text.
fn parse_text(text: &str) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    let (count, unit) = match text.as_bytes()[text.len() - 1] {
        unit @ (b's' | b'h' | b'd' | b'm') => (&text[..text.len() - 1], unit),
        _ => (text, b's'),
    };
    if count.is_empty() || count.len() > 19 || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let per_unit: u64 = match unit {
        b'h' => 3_600,
        b'd' => 86_400,
        b'm' => 31 * 86_400,
        _ => 1,
    };
    Some(count.parse::<u64>().ok()?.saturating_mul(per_unit))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const START_MS: u64 = NOW * 1000 + 700;
    const MAX: Duration = Duration::from_secs(186 * 86_400);

    /// Milliseconds from the start to the end that `value` asks for.
    fn length_ms(value: Value) -> u64 {
        parse(Some(&value), NOW).unwrap().end_ms(MAX, START_MS) - START_MS
    }

    #[test]
    fn units_and_bare_counts_are_lengths() {
        assert_eq!(length_ms(json!("30s")), 30_000);
        assert_eq!(length_ms(json!("12h")), 12 * 3_600_000);
        assert_eq!(length_ms(json!("30d")), 30 * 86_400_000);
        assert_eq!(length_ms(json!("2m")), 62 * 86_400_000, "a month is 31 days, as in Databunker");
        assert_eq!(length_ms(json!("1")), 1_000, "Databunker's data minimisation guide sends \"1\"");
        assert_eq!(length_ms(json!(3600)), 3_600_000);
        assert_eq!(length_ms(json!(90.9)), 90_000, "fractions are cut off, as Databunker does");
    }

    #[test]
    fn a_count_beyond_now_is_a_point_in_time_kept_to_the_second() {
        for value in [json!(NOW + 600), json!((NOW + 600).to_string()), json!(NOW as f64 + 600.4)] {
            assert_eq!(parse(Some(&value), NOW).unwrap(), Requested::Until(NOW + 600), "{value}");
            assert_eq!(parse(Some(&value), NOW).unwrap().end_ms(MAX, START_MS), (NOW + 600) * 1000, "{value}");
        }
    }

    #[test]
    fn absent_empty_or_zero_asks_for_the_maximum_and_longer_is_capped() {
        let max_ms = MAX.as_millis() as u64;
        assert_eq!(parse(None, NOW).unwrap(), Requested::Maximum);
        for value in [Value::Null, json!(""), json!("0"), json!(0), json!("0d")] {
            assert_eq!(length_ms(value.clone()), max_ms, "{value}");
        }
        assert_eq!(length_ms(json!("12m")), max_ms);
        assert_eq!(length_ms(json!("9999999999999999999")), max_ms);
        assert_eq!(length_ms(json!(NOW + 365 * 86_400)), max_ms);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            json!("1w"),
            json!("-5"),
            json!("5 d"),
            json!(" 90"),
            json!("d"),
            json!("1.5d"),
            json!("99999999999999999999"),
            json!(-1),
            json!(-0.5),
            json!(true),
            json!([1]),
            json!({"d": 1}),
        ] {
            assert!(parse(Some(&bad), NOW).is_err(), "{bad}");
        }
    }
}
