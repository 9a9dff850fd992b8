//! CronJob schedules: standard five-field crontab lines and the `@hourly`
//! family (what kube-apiserver's `cron.ParseStandard` takes), read by
//! `croner`, in an IANA time zone from jiff's bundled database (UTC when
//! `spec.timeZone` is unset, the zone kube-controller-manager runs in).

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

/// Parses a crontab line; the error is the parser's message.
pub fn parse_cron(schedule: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|error| error.to_string())
}

/// The IANA zone `name`; the error is worded as Go's `time.LoadLocation`.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("unknown time zone {name}"))
}

impl Schedule {
    /// `schedule` in the zone `zone` (UTC when `None`).
    pub fn new(schedule: &str, zone: Option<&str>) -> Result<Self, String> {
        let zone = match zone {
            Some(name) => time_zone(name)?,
            None => TimeZone::UTC,
        };
        Ok(Self {
            cron: parse_cron(schedule)?,
            zone,
        })
    }

    /// The first scheduled time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&after.to_zoned(self.zone.clone()), false)
            .ok()
            .map(|zoned| zoned.timestamp())
    }

    /// The last scheduled time at or before `at`.
    pub fn latest_until(&self, at: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&at.to_zoned(self.zone.clone()), true)
            .ok()
            .map(|zoned| zoned.timestamp())
    }

    /// `at` written as RFC 3339 in the schedule's zone (the cronjob
    /// controller's `scheduled-timestamp` annotation).
    pub fn format(&self, at: Timestamp) -> String {
        let zoned = at.to_zoned(self.zone.clone());
        zoned
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn standard_lines_and_nicknames_parse() {
        for good in [
            "*/1 * * * *",
            "0 3 * * MON-FRI",
            "@hourly",
            "@daily",
            "5 4 1 JAN *",
        ] {
            assert!(parse_cron(good).is_ok(), "{good}");
        }
        for bad in ["", "bad", "* * * *", "0 0 * * * *", "61 * * * *"] {
            assert!(parse_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_times_follow_the_time_zone() {
        let utc = Schedule::new("0 9 * * *", None).unwrap();
        assert_eq!(
            utc.next_after(at("2024-03-01T08:00:00Z")),
            Some(at("2024-03-01T09:00:00Z"))
        );
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        let berlin = Schedule::new("0 9 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            berlin.next_after(at("2024-03-01T08:00:00Z")),
            Some(at("2024-03-02T08:00:00Z"))
        );
        assert_eq!(
            berlin.next_after(at("2024-06-01T00:00:00Z")),
            Some(at("2024-06-01T07:00:00Z"))
        );
        assert_eq!(
            berlin.format(at("2024-06-01T07:00:00Z")),
            "2024-06-01T09:00:00+02:00"
        );
        assert_eq!(
            utc.format(at("2024-06-01T07:00:00Z")),
            "2024-06-01T07:00:00Z"
        );
    }

    #[test]
    fn latest_until_includes_the_instant() {
        let every_five = Schedule::new("*/5 * * * *", None).unwrap();
        assert_eq!(
            every_five.latest_until(at("2024-03-01T08:10:00Z")),
            Some(at("2024-03-01T08:10:00Z"))
        );
        assert_eq!(
            every_five.latest_until(at("2024-03-01T08:14:59Z")),
            Some(at("2024-03-01T08:10:00Z"))
        );
    }

    #[test]
    fn unknown_zones_are_named() {
        assert_eq!(
            time_zone("Mars/Olympus").unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
        assert!(time_zone("America/New_York").is_ok());
    }
}
