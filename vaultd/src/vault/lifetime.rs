//! Databunker's `expiration` values, one reading for every route that takes one (the
//! expiration flow, sessions, shared records): how long something may last, capped by
//! the vault's maximum for that kind of thing.
//!
//! A value is a count with a unit (`30s`, `12h`, `30d`, `6m` — months of 31 days, as in
//! Databunker), a bare count of seconds (`"3600"` or `3600`), or a Unix time in seconds
//! (any count larger than the current time, as Databunker reads it). Absent, empty or
//! zero asks for the maximum; anything longer than the maximum is cut to it.

use std::time::Duration;

use serde_json::Value;

use crate::error::{VaultError, VaultResult};

const MESSAGE: &str =
    "expiration must be a duration like 30s, 12h, 30d or 6m (months), a number of seconds, or a Unix time";

/// The lifetime an `expiration` value asks for at `now_secs`, at most `max`.
pub(super) fn requested(expiration: Option<&Value>, max: Duration, now_secs: u64) -> VaultResult<Duration> {
    let seconds = match expiration {
        None | Some(Value::Null) => 0,
        Some(Value::String(text)) => parse_text(text).ok_or_else(|| VaultError::bad_request(MESSAGE))?,
        Some(Value::Number(number)) => number.as_u64().ok_or_else(|| VaultError::bad_request(MESSAGE))?,
        Some(_) => return Err(VaultError::bad_request(MESSAGE)),
    };
    // A count beyond the current time is a point in time, not a length.
    let seconds = if seconds > now_secs { seconds - now_secs } else { seconds };
    Ok(match seconds {
        0 => max,
        seconds => max.min(Duration::from_secs(seconds)),
    })
}

/// Seconds in `30d`, `12h`, `6m`, `30s` or `3600`; `Some(0)` for an empty text.
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
    const MAX: Duration = Duration::from_secs(186 * 86_400);

    fn secs(value: Value) -> u64 {
        requested(Some(&value), MAX, NOW).unwrap().as_secs()
    }

    #[test]
    fn units_and_bare_counts_are_lengths() {
        assert_eq!(secs(json!("30s")), 30);
        assert_eq!(secs(json!("12h")), 12 * 3_600);
        assert_eq!(secs(json!("30d")), 30 * 86_400);
        assert_eq!(secs(json!("2m")), 62 * 86_400, "a month is 31 days, as in Databunker");
        assert_eq!(secs(json!("1")), 1, "Databunker's data minimisation guide sends \"1\"");
        assert_eq!(secs(json!(3600)), 3_600);
    }

    #[test]
    fn a_count_beyond_now_is_a_point_in_time() {
        assert_eq!(secs(json!(NOW + 600)), 600);
        assert_eq!(secs(json!((NOW + 7_200).to_string())), 7_200);
    }

    #[test]
    fn absent_empty_or_zero_asks_for_the_maximum_and_longer_is_capped() {
        assert_eq!(requested(None, MAX, NOW).unwrap(), MAX);
        assert_eq!(secs(Value::Null), MAX.as_secs());
        assert_eq!(secs(json!("")), MAX.as_secs());
        assert_eq!(secs(json!("0")), MAX.as_secs());
        assert_eq!(secs(json!(0)), MAX.as_secs());
        assert_eq!(secs(json!("12m")), MAX.as_secs());
        assert_eq!(secs(json!("9999999999999999999")), MAX.as_secs());
        assert_eq!(secs(json!(NOW + 365 * 86_400)), MAX.as_secs());
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            json!("1w"),
            json!("-5"),
            json!("5 d"),
            json!(" 90"),
            json!("d"),
            json!("99999999999999999999"),
            json!(1.5),
            json!(-1),
            json!(true),
            json!([1]),
        ] {
            assert!(requested(Some(&bad), MAX, NOW).is_err(), "{bad}");
        }
    }
}
