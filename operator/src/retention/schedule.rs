//! The next time a policy's CronJob starts a run, from its cron schedule (five fields,
//! UTC, the POSIX/Vixie semantics Kubernetes uses: when both day-of-month and day-of-week
//! are restricted, either matches). Parsed with `croner`.

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use k8s_openapi::jiff::Timestamp;

/// The first start strictly after `after`; an explanation when the schedule does not parse.
pub fn next_run(schedule: &str, after: Timestamp) -> Result<Timestamp, String> {
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|error| format!("schedule {schedule:?} is not a valid cron schedule: {error}"))?;
    let start = DateTime::<Utc>::from_timestamp(after.as_second(), after.subsec_nanosecond().unsigned_abs())
        .ok_or_else(|| format!("{after} is out of range"))?;
    let next = cron
        .find_next_occurrence(&start, false)
        .map_err(|error| format!("schedule {schedule:?} never runs: {error}"))?;
    Timestamp::new(next.timestamp(), 0).map_err(|error| format!("next run out of range: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn daily_at_three_is_tomorrow_after_three() {
        assert_eq!(next_run("0 3 * * *", at("2026-11-23T05:16:00Z")), Ok(at("2026-11-24T03:00:00Z")));
        assert_eq!(next_run("0 3 * * *", at("2026-11-23T02:59:59.5Z")), Ok(at("2026-11-23T03:00:00Z")));
        assert_eq!(next_run("0 3 * * *", at("2026-11-23T03:00:00Z")), Ok(at("2026-11-24T03:00:00Z")), "strictly after");
    }

    #[test]
    fn steps_ranges_and_weekdays() {
        assert_eq!(next_run("*/15 * * * *", at("2026-11-23T05:16:00Z")), Ok(at("2026-11-23T05:30:00Z")));
        // 2026-11-28 is a Saturday: the next weekday run is Monday the 30th.
        assert_eq!(next_run("30 2 * * 1-5", at("2026-11-28T00:00:00Z")), Ok(at("2026-11-30T02:30:00Z")));
        assert_eq!(next_run("0 0 1 * *", at("2026-11-23T00:00:00Z")), Ok(at("2026-12-01T00:00:00Z")));
    }

    #[test]
    fn a_bad_schedule_is_explained() {
        for bad in ["61 * * * *", "0 3 * *", "0 0 3 * * *", "every day"] {
            let error = next_run(bad, at("2026-11-23T00:00:00Z")).unwrap_err();
            assert!(error.contains("is not a valid cron schedule"), "{bad}: {error}");
        }
    }
}
