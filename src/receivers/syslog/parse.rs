//! Syslog messages: RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD…] MSG`) and, leniently,
//! RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[pid]: MSG`), per PROTOCOLS.md §5.4.

pub use super::location::Location;

/// Structured data: (SD-ID, [(name, value)]) per element.
pub type StructuredData = Vec<(String, Vec<(String, String)>)>;

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    pub facility: u8,
    pub severity: u8,
    pub version: Option<u8>,
    /// Nanoseconds since the epoch, if the message had a usable timestamp.
    pub time_ns: Option<u64>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub proc_id: Option<String>,
    pub msg_id: Option<String>,
    pub structured_data: StructuredData,
    pub message: String,
}

fn nil(s: &str) -> Option<String> {
    (s != "-" && !s.is_empty()).then(|| s.to_string())
}

/// `<PRI>` at the start: (facility, severity, rest).
fn pri(line: &str) -> Result<(u8, u8, &str), String> {
    let rest = line.strip_prefix('<').ok_or("does not start with <PRI>")?;
    let end = rest.find('>').filter(|e| (1..=3).contains(e)).ok_or("invalid <PRI>")?;
    let value: u16 = rest[..end].parse().map_err(|_| "invalid <PRI>".to_string())?;
    if value > 191 {
        return Err(format!("<PRI> {value} is over 191"));
    }
    Ok(((value / 8) as u8, (value % 8) as u8, &rest[end + 1..]))
}

/// Structured data: `-` or one or more `[ID name="value" …]`; returns them and the rest.
fn structured_data(s: &str) -> Result<(StructuredData, &str), String> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok((Vec::new(), rest));
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(r) = rest.strip_prefix('[') {
        let id_end = r.find([' ', ']']).ok_or("unterminated structured data")?;
        let id = r[..id_end].to_string();
        let mut params = Vec::new();
        let mut r = &r[id_end..];
        loop {
            r = r.trim_start_matches(' ');
            if let Some(after) = r.strip_prefix(']') {
                rest = after;
                break;
            }
            let eq = r.find('=').ok_or("structured data parameter without =")?;
            let name = r[..eq].to_string();
            let v = r[eq + 1..].strip_prefix('"').ok_or("structured data value not quoted")?;
            let mut value = String::new();
            let mut chars = v.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            if !matches!(n, '"' | '\\' | ']') {
                                value.push('\\');
                            }
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or("unterminated structured data value")?;
            params.push((name, value));
            r = &v[end + 1..];
        }
        out.push((id, params));
    }
    if out.is_empty() {
        return Err("structured data must be - or [ID …]".into());
    }
    Ok((out, rest))
}

/// Parses an RFC 5424 message.
pub fn rfc5424(line: &str) -> Result<Message, String> {
    let (facility, severity, rest) = pri(line)?;
    let mut parts = rest.splitn(7, ' ');
    let mut next = |what: &str| parts.next().ok_or_else(|| format!("missing {what}"));
    let version: u8 = next("VERSION")?.parse().map_err(|_| "VERSION is not a number (not RFC 5424)".to_string())?;
    let ts = next("TIMESTAMP")?;
    let time_ns = if ts == "-" {
        None
    } else {
        Some(crate::timefmt::parse_rfc3339(ts).ok_or_else(|| format!("invalid TIMESTAMP \"{ts}\""))?)
    };
    let hostname = nil(next("HOSTNAME")?);
    let app_name = nil(next("APP-NAME")?);
    let proc_id = nil(next("PROCID")?);
    let msg_id = nil(next("MSGID")?);
    let sd_and_msg = next("STRUCTURED-DATA")?;
    let (structured_data, rest) = structured_data(sd_and_msg)?;
    let message = rest.strip_prefix(' ').unwrap_or(rest);
    let message = message.strip_prefix('\u{feff}').unwrap_or(message).to_string();
    Ok(Message {
        facility,
        severity,
        version: Some(version),
        time_ns,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        message,
    })
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Parses an RFC 3164 message; its timestamp (no zone, no year) is read in `location` as of
/// `now_s` (seconds since the epoch).
pub fn rfc3164(line: &str, location: &Location, now_s: i64) -> Result<Message, String> {
    let (facility, severity, rest) = pri(line)?;
    let mut m = Message { facility, severity, ..Default::default() };
    let mut rest = rest;
    // `Mmm dd hh:mm:ss ` (the day space-padded).
    // (Checked as ASCII first: the slices below are by byte and the text may be anything.)
    if rest.len() >= 16
        && rest.as_bytes()[..16].is_ascii()
        && MONTHS.contains(&&rest[..3])
        && rest.as_bytes()[15] == b' '
    {
        let month = MONTHS.iter().position(|x| *x == &rest[..3]).unwrap_or(0) as u32 + 1;
        let day: u32 = rest[4..6].trim().parse().map_err(|_| "invalid day")?;
        let h: u32 = rest[7..9].parse().map_err(|_| "invalid hour")?;
        let mi: u32 = rest[10..12].parse().map_err(|_| "invalid minute")?;
        let s: u32 = rest[13..15].parse().map_err(|_| "invalid second")?;
        if h > 23 || mi > 59 || s > 60 {
            return Err("invalid time of day".into());
        }
        let secs = location.resolve(month, day, (h, mi, s), now_s);
        m.time_ns = secs.and_then(|s| u64::try_from(s).ok()).map(|s| s * 1_000_000_000);
        rest = &rest[16..];
        // HOSTNAME, unless what follows is already the tag (`TAG:` / `TAG[pid]:`).
        if let Some((host, after)) = rest.split_once(' ')
            && !host.ends_with(':')
            && !host.contains('[')
        {
            m.hostname = nil(host);
            rest = after;
        }
    } else {
        return Err("neither RFC 5424 nor RFC 3164: no Mmm dd hh:mm:ss timestamp after <PRI>".into());
    }
    // TAG[pid]: MSG
    let tag_end = rest.find([':', '[', ' ']).unwrap_or(0);
    if tag_end > 0 && tag_end <= 48 {
        m.app_name = Some(rest[..tag_end].to_string());
        let mut after = &rest[tag_end..];
        if let Some(p) = after.strip_prefix('[')
            && let Some(close) = p.find(']')
        {
            m.proc_id = Some(p[..close].to_string());
            after = &p[close + 1..];
        }
        if let Some(msg) = after.strip_prefix(':') {
            m.message = msg.strip_prefix(' ').unwrap_or(msg).to_string();
            return Ok(m);
        }
    }
    m.app_name = None;
    m.message = rest.to_string();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-12-01T00:00:00Z: the examples below are of 2025.
    const NOW: i64 = 1_764_547_200;

    #[test]
    fn a_timestamp_past_what_nanoseconds_hold_is_refused_not_wrapped() {
        // Found by the syslog fuzz target: the year 4052 overflowed the nanosecond product.
        let input = b"<134>1 4052-12-06T20:00:00Z web - - - - paid";
        let line = std::str::from_utf8(input).unwrap();
        assert!(rfc5424(line).unwrap_err().contains("invalid TIMESTAMP"));
        assert_eq!(crate::timefmt::parse_rfc3339("2262-04-11T23:47:16Z"), Some(9_223_372_036_000_000_000));
        assert_eq!(crate::timefmt::parse_rfc3339("2262-04-11T23:47:17Z"), None);
        assert_eq!(crate::timefmt::parse_rfc3339("9999-12-31T23:59:59.999999999-23:59"), None);
    }

    #[test]
    fn any_text_after_a_valid_start_is_parsed_or_refused_never_a_panic() {
        // Multi-byte characters where the parsers slice by byte position.
        let tails = ["Привет мир, как дела сегодня", "a\u{fffd}bc", "日本語のログメッセージです", "é", ""];
        let heads = [
            "<13>",
            "<13>Oct",
            "<13>Oct 11 22:14:1",
            "<13>Oct 11 22:14:15 ",
            "<34>1 2003-10-11T22:14:15",
            "<34>1 2003-10-11T22:14:15.003",
            "<34>1 2003-10-11T22:14:15+",
            "<34>1 2003-10-11T22:14:15.003+0",
            "<34>1 2003-10-11T22:14:15Z host app - - [id",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for head in heads {
            for tail in tails {
                for cut in 0..=tail.chars().count() {
                    let text: String = format!("{head}{}", tail.chars().take(cut).collect::<String>());
                    let _ = rfc5424(&text);
                    let _ = rfc3164(&text, &Location::Fixed(0), NOW);
                    let _ = crate::timefmt::parse_rfc3339(text.get(8..).unwrap_or(""));
                }
            }
            // And random characters, multi-byte ones among them.
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let n = (seed % 24) as usize;
                let text: String = format!(
                    "{head}{}",
                    (0..n)
                        .map(|i| ['a', ' ', ':', 'é', '日', '+', '0', '[', ']', '"']
                            [(seed.rotate_right(i as u32 * 3) % 10) as usize])
                        .collect::<String>()
                );
                let _ = rfc5424(&text);
                let _ = rfc3164(&text, &Location::Fixed(0), NOW);
                let _ = crate::timefmt::parse_rfc3339(text.get(8..).unwrap_or(""));
            }
        }
        assert!(crate::timefmt::parse_rfc3339("2003-10-11T22:14:15+\u{e9}0").is_none());
        assert!(rfc3164("<13>Привет мир", &Location::Fixed(0), NOW).is_err());
    }

    #[test]
    fn rfc5424_examples() {
        let m = rfc5424("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8").unwrap();
        assert_eq!((m.facility, m.severity, m.version), (4, 2, Some(1)));
        assert_eq!(m.time_ns, Some(1_065_910_455_003_000_000));
        assert_eq!(m.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.app_name.as_deref(), Some("su"));
        assert_eq!((m.proc_id, m.msg_id.as_deref()), (None, Some("ID47")));
        assert_eq!(m.message, "'su root' failed for lonvick on /dev/pts/8");
        let m = rfc5424(
            r#"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][origin ip="192.0.2.1" swVersion="2.1"] %% It's time to make the do-nuts."#,
        )
        .unwrap();
        assert_eq!(m.time_ns, Some(1_061_727_255_000_003_000));
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[0].1[1], ("eventSource".to_string(), "Application".to_string()));
        assert_eq!(m.structured_data[1].0, "origin");
        assert_eq!(m.message, "%% It's time to make the do-nuts.");
        let m = rfc5424(r#"<13>1 - - - - - [a x="q\"u\]o\\te"]"#).unwrap();
        assert_eq!(m.structured_data[0].1[0].1, r#"q"u]o\te"#);
        assert_eq!(m.message, "");
    }

    #[test]
    fn rfc3164_examples() {
        let m = rfc3164(
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            &Location::Fixed(0),
            NOW,
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (4, 2));
        assert_eq!(m.hostname.as_deref(), Some("mymachine"));
        assert_eq!(m.app_name.as_deref(), Some("su"));
        assert_eq!(m.message, "'su root' failed for lonvick on /dev/pts/8");
        let m = rfc3164("<13>Nov  6 08:49:37 host sshd[1234]: Accepted key", &Location::Fixed(3600), NOW).unwrap();
        assert_eq!(m.proc_id.as_deref(), Some("1234"));
        assert_eq!(m.time_ns, Some((1_762_418_977 - 3600) * 1_000_000_000));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(rfc5424("hello").unwrap_err().contains("<PRI>"));
        assert!(rfc5424("<999>1 - - - - - -").unwrap_err().contains("<PRI>"));
        assert!(rfc5424("<13>Oct 11 22:14:15 host x: y").unwrap_err().contains("not RFC 5424"));
        assert!(rfc3164("<13>garbage", &Location::Fixed(0), NOW).unwrap_err().contains("neither"));
        assert!(rfc5424("<13>1 2003-13-11T22:14:15Z h a p m - x").unwrap_err().contains("TIMESTAMP"));
    }
}
