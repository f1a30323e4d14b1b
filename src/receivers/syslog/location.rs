//! `location`: the time zone RFC 3164 timestamps are read in. They carry neither a zone nor a
//! year: the zone is UTC, a fixed offset or an IANA name (with its daylight-saving rules, from
//! the time zone database built into switchyard), and the year is the one that puts the time at
//! most a week ahead of now, so December's messages read in January stay in December.

use chrono::{NaiveDate, TimeZone};

#[derive(Debug, Clone)]
pub enum Location {
    /// Seconds east of UTC.
    Fixed(i64),
    Zone(chrono_tz::Tz),
}

/// How far ahead of now a timestamp may be before it is taken as last year's.
const AHEAD: i64 = 7 * 86400;

impl Location {
    /// `UTC`, `+02:00` / `-05:30`, or a name such as `Europe/Paris` or `America/New_York`.
    pub fn parse(text: &str) -> Result<Location, String> {
        match text {
            "" | "UTC" | "utc" | "Etc/UTC" => return Ok(Location::Fixed(0)),
            o if o.len() == 6 && o.is_ascii() && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let h: i64 = o[1..3].parse().map_err(|_| format!("invalid offset \"{o}\""))?;
                let m: i64 = o[4..6].parse().map_err(|_| format!("invalid offset \"{o}\""))?;
                if h > 14 || m > 59 {
                    return Err(format!("invalid offset \"{o}\""));
                }
                return Ok(Location::Fixed(sign * (h * 3600 + m * 60)));
            }
            _ => {}
        }
        text.parse::<chrono_tz::Tz>().map(Location::Zone).map_err(|_| {
            format!("\"{text}\" is neither UTC, an offset such as +02:00, nor a time zone name such as Europe/Paris")
        })
    }

    /// Seconds since the epoch of local `month`/`day` `h:mi:s`, in the year that puts it at
    /// most a week after `now_s`; `None` for a date that does not exist (February 30).
    pub fn resolve(&self, month: u32, day: u32, (h, mi, s): (u32, u32, u32), now_s: i64) -> Option<i64> {
        let year = self.year_at(now_s);
        let at = |year: i32| self.to_utc(year, month, day, (h, mi, s));
        match at(year) {
            Some(t) if t > now_s + AHEAD => at(year - 1),
            Some(t) => Some(t),
            // February 29 in a year without it: perhaps last year's (or simply invalid).
            None => at(year - 1).filter(|t| *t <= now_s + AHEAD),
        }
    }

    fn year_at(&self, now_s: i64) -> i32 {
        use chrono::Datelike;
        let utc = chrono::DateTime::from_timestamp(now_s, 0).unwrap_or_default();
        match self {
            Location::Fixed(off) => (utc + chrono::Duration::seconds(*off)).year(),
            Location::Zone(tz) => utc.with_timezone(tz).year(),
        }
    }

    fn to_utc(&self, year: i32, month: u32, day: u32, (h, mi, s): (u32, u32, u32)) -> Option<i64> {
        // A leap second (:60) is the next second.
        let naive = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(h, mi, s.min(59))?
            + chrono::Duration::seconds(i64::from(s.saturating_sub(59)));
        match self {
            Location::Fixed(off) => Some(naive.and_utc().timestamp() - off),
            Location::Zone(tz) => {
                let t = tz.from_local_datetime(&naive);
                // In the autumn overlap the earlier (daylight) time; in the spring gap, the
                // clock-on-the-wall time an hour later.
                let t =
                    t.earliest().or_else(|| tz.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest());
                t.map(|t| t.timestamp())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    #[test]
    fn zones_follow_daylight_saving_and_offsets_are_fixed() {
        let now = utc("2025-08-01T00:00:00Z");
        let paris = Location::parse("Europe/Paris").unwrap();
        // Summer: UTC+2; winter: UTC+1.
        assert_eq!(paris.resolve(7, 14, (12, 0, 0), now), Some(utc("2025-07-14T10:00:00Z")));
        assert_eq!(paris.resolve(1, 14, (12, 0, 0), now), Some(utc("2025-01-14T11:00:00Z")));
        let ny = Location::parse("America/New_York").unwrap();
        assert_eq!(ny.resolve(7, 4, (9, 30, 0), now), Some(utc("2025-07-04T13:30:00Z")));
        // The spring-forward gap (02:30 does not exist on 9 March 2025 in New York).
        assert_eq!(ny.resolve(3, 9, (2, 30, 0), now), Some(utc("2025-03-09T07:30:00Z")));
        assert_eq!(
            Location::parse("+05:30").unwrap().resolve(7, 1, (5, 30, 0), now),
            Some(utc("2025-07-01T00:00:00Z"))
        );
        assert_eq!(Location::parse("UTC").unwrap().resolve(7, 1, (0, 0, 60), now), Some(utc("2025-07-01T00:01:00Z")));
        assert!(Location::parse("Mars/Olympus_Mons").unwrap_err().contains("time zone name"));
        assert!(Location::parse("+25:00").is_err());
    }

    #[test]
    fn the_year_is_the_one_that_is_not_in_the_future() {
        let utc0 = Location::Fixed(0);
        // Read on 2 January 2026: a 31 December message is from 2025.
        let now = utc("2026-01-02T00:10:00Z");
        assert_eq!(utc0.resolve(12, 31, (23, 59, 0), now), Some(utc("2025-12-31T23:59:00Z")));
        assert_eq!(utc0.resolve(1, 2, (0, 9, 0), now), Some(utc("2026-01-02T00:09:00Z")));
        // A sender a few days ahead stays in this year.
        assert_eq!(utc0.resolve(1, 5, (0, 0, 0), now), Some(utc("2026-01-05T00:00:00Z")));
        // The year is the local one: 23:30 on 31 December in New York is already 2026 in UTC.
        let ny = Location::parse("America/New_York").unwrap();
        let now = utc("2026-01-01T04:40:00Z");
        assert_eq!(ny.resolve(12, 31, (23, 30, 0), now), Some(utc("2026-01-01T04:30:00Z")));
        // February 29 read in 2025 is 2024's; February 30 is nobody's.
        assert_eq!(utc0.resolve(2, 29, (0, 0, 0), utc("2025-03-01T00:00:00Z")), Some(utc("2024-02-29T00:00:00Z")));
        assert_eq!(utc0.resolve(2, 30, (0, 0, 0), now), None);
    }
}
