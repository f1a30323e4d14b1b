//! Times written out as dates for the formats that want them (RFC 3339 for Elasticsearch,
//! `YYYY-MM-DD hh:mm:ss.nnnnnnnnn` for ClickHouse), from nanoseconds since the epoch, in UTC.

/// (year, month, day, hour, minute, second, nanosecond) of `ns` since the epoch.
pub fn civil(ns: u64) -> (i64, i64, i64, i64, i64, i64, u64) {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since the epoch (proleptic Gregorian).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, ns % 1_000_000_000)
}

/// `2023-11-14T22:13:20.123456789Z`
pub fn rfc3339(ns: u64) -> String {
    let (y, mo, d, h, mi, s, n) = civil(ns);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{n:09}Z")
}

/// `2023-11-14 22:13:20.123456789`
pub fn datetime(ns: u64) -> String {
    let (y, mo, d, h, mi, s, n) = civil(ns);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{n:09}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(datetime(0), "1970-01-01 00:00:00.000000000");
        assert_eq!(datetime(951_782_400_000_000_000), "2000-02-29 00:00:00.000000000", "a leap day");
    }
}
