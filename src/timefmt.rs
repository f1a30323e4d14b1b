//! Times as dates: parsed from RFC 3339 (syslog, container logs), and written out for the formats
//! that want them (RFC 3339 for Elasticsearch,
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

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
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

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// An RFC 3339 timestamp (`2003-10-11T22:14:15.003Z`, `…+02:00`) as nanoseconds since the epoch.
pub fn parse_rfc3339(ts: &str) -> Option<u64> {
    let b = ts.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &ts[19..];
    let mut frac_ns = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let padded = format!("{:0<9}", &f[..digits]);
        frac_ns = padded.parse().ok()?;
        rest = &f[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && o.is_ascii() && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo as u32, d as u32) * 86400 + h * 3600 + mi * 60 + s - offset_s;
    // Nanoseconds since the epoch, counted in an i64, end in April 2262: later is refused.
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)?;
    u64::try_from(ns).ok()
}

/// The collector's strptime directives (filelog `layout_type: strptime`, OTTL `Time`) as
/// chrono items, checked: an unknown directive is an error naming it.
pub fn strptime(layout: &str) -> Result<Vec<chrono::format::Item<'static>>, String> {
    if layout.is_empty() {
        return Err("is empty".into());
    }
    let mut out = String::with_capacity(layout.len() + 8);
    let mut chars = layout.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let d = chars.next().ok_or_else(|| format!("\"{layout}\" ends with a lone %"))?;
        out.push_str(match d {
            'Y' => "%Y",
            'y' => "%y",
            'm' | 'o' | 'q' => "%m",
            'b' | 'h' => "%b",
            'B' => "%B",
            'd' | 'g' => "%d",
            'e' => "%e",
            'a' => "%a",
            'A' => "%A",
            'H' => "%H",
            'I' => "%I",
            'l' => "%l",
            'p' | 'P' => "%p",
            'M' => "%M",
            'S' => "%S",
            'L' => "%3f",
            'f' => "%6f",
            's' => "%9f",
            'z' => "%z",
            'Z' => "%Z",
            'i' => "%#z",
            'j' => "%:z",
            'k' => "%::z",
            'D' | 'x' => "%m/%d/%y",
            'F' => "%Y-%m-%d",
            'T' | 'X' => "%H:%M:%S",
            'r' => "%I:%M:%S %p",
            'R' => "%H:%M",
            'c' => "%a %b %d %H:%M:%S %Y",
            'n' => "\n",
            't' => "\t",
            '%' => "%%",
            other => return Err(format!("\"{layout}\" has an unknown directive %{other}")),
        });
    }
    chrono::format::StrftimeItems::new(&out).parse_to_owned().map_err(|e| format!("\"{layout}\": {e}"))
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
