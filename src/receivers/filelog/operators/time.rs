//! Timestamps: the parsers' `timestamp` block and the `time_parser` operator, with the
//! collector's layout types — `strptime` directives, Go reference-time layouts (`gotime`) and
//! `epoch` numbers — and `location` for times written without a zone.

use super::Record;
use super::field::Field;
use chrono::format::{Fixed, Item, Numeric, Pad, Parsed, StrftimeItems};
use chrono::{Datelike, TimeZone};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LayoutType {
    #[default]
    Strptime,
    Gotime,
    Epoch,
}

/// The keys of a `timestamp` block (and of `time_parser`, with the operator's own keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    pub parse_from: Option<String>,
    #[serde(default)]
    pub layout_type: LayoutType,
    pub layout: Option<String>,
    pub location: Option<String>,
}

super::operator_config!(
    /// `type: time_parser`: the `timestamp` keys at the top level.
    OperatorConfig {
        parse_from: Option<String>,
        layout_type: LayoutType,
        layout: Option<String>,
        location: Option<String>,
    }
);

impl OperatorConfig {
    pub fn build(&self, key: &str) -> Result<Box<dyn super::Op>, Invalid> {
        let c = TimeConfig {
            parse_from: self.parse_from.clone(),
            layout_type: self.layout_type,
            layout: self.layout.clone(),
            location: self.location.clone(),
        };
        Ok(Box::new(TimeParser::build(&c, key)?))
    }
}

impl super::Op for TimeParser {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        self.parse(rec)
    }
}

#[derive(Debug)]
enum Layout {
    Items(Vec<Item<'static>>),
    /// Nanoseconds per unit of the number.
    Epoch(u64),
}

#[derive(Debug)]
enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

#[derive(Debug)]
pub struct TimeParser {
    from: Field,
    layout: Layout,
    zone: Zone,
}

type Invalid = (String, String);

impl TimeParser {
    /// `key` is where the keys sit (`operators.1.timestamp`), for errors.
    pub fn build(c: &TimeConfig, key: &str) -> Result<TimeParser, Invalid> {
        let at = |k: &str| if key.is_empty() { k.to_string() } else { format!("{key}.{k}") };
        let from = c.parse_from.as_deref().ok_or_else(|| (at("parse_from"), "required".to_string()))?;
        let from = Field::parse(from).map_err(|e| (at("parse_from"), e))?;
        let layout = c.layout.as_deref().ok_or_else(|| (at("layout"), "required".to_string()))?;
        let layout = match c.layout_type {
            LayoutType::Strptime => Layout::Items(crate::timefmt::strptime(layout).map_err(|e| (at("layout"), e))?),
            LayoutType::Gotime => Layout::Items(gotime(layout).map_err(|e| (at("layout"), e))?),
            LayoutType::Epoch => Layout::Epoch(match layout {
                "s" | "s.ms" | "s.us" | "s.ns" => 1_000_000_000,
                "ms" => 1_000_000,
                "us" => 1_000,
                "ns" => 1,
                other => {
                    return Err((
                        at("layout"),
                        format!("\"{other}\": an epoch layout is s, ms, us, ns, s.ms, s.us or s.ns"),
                    ));
                }
            }),
        };
        let zone = match c.location.as_deref() {
            None | Some("Local") | Some("") => Zone::Local,
            Some(name) => Zone::Named(name.parse().map_err(|_| {
                (at("location"), format!("\"{name}\" is not a time zone of the IANA database, such as Europe/Berlin"))
            })?),
        };
        // An epoch time has no zone to apply: `location` is accepted and does nothing, as in the
        // collector.
        Ok(TimeParser { from, layout, zone })
    }

    /// Sets the record's time from its field.
    pub fn parse(&self, rec: &mut Record) -> Result<(), String> {
        let v = self.from.get(rec).ok_or_else(|| format!("the entry has no {} to parse the time from", self.from))?;
        let ns = match &self.layout {
            Layout::Epoch(unit) => epoch(v, *unit)?,
            Layout::Items(items) => {
                let Some(Value::StringValue(s)) = &v.value else {
                    return Err(format!("the time in {} is not a string", self.from));
                };
                self.text(s, items)?
            }
        };
        rec.log.time_unix_nano = ns;
        Ok(())
    }

    fn text(&self, s: &str, items: &[Item<'static>]) -> Result<u64, String> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, s, items.iter())
            .map_err(|e| format!("\"{s}\" does not follow the time layout: {e}"))?;
        if parsed.year().is_none() && parsed.year_mod_100().is_none() {
            // Layouts such as syslog's `Jan 2 15:04:05` have no year: this year.
            let _ = parsed.set_year(i64::from(chrono::Utc::now().year()));
        }
        let date = parsed.to_naive_date().map_err(|e| format!("\"{s}\" has no whole date: {e}"))?;
        let time = if parsed.hour_div_12().is_some() {
            parsed.to_naive_time().map_err(|e| format!("\"{s}\": {e}"))?
        } else {
            chrono::NaiveTime::MIN
        };
        let local = chrono::NaiveDateTime::new(date, time);
        let utc = match parsed.offset() {
            Some(offset) => local.and_utc() - chrono::Duration::seconds(i64::from(offset)),
            None => match &self.zone {
                Zone::Local => chrono::Local.from_local_datetime(&local).earliest().map(|t| t.to_utc()),
                Zone::Named(tz) => tz.from_local_datetime(&local).earliest().map(|t| t.to_utc()),
            }
            .ok_or_else(|| format!("\"{s}\" does not exist in the time zone"))?,
        };
        utc.timestamp_nanos_opt()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| format!("\"{s}\" is out of range (before 1970 or after 2262)"))
    }
}

/// A number of `unit` nanoseconds since the epoch: an integer, a float, or a decimal string.
fn epoch(v: &AnyValue, unit: u64) -> Result<u64, String> {
    let ns = match &v.value {
        Some(Value::IntValue(i)) => u64::try_from(*i).ok().and_then(|i| i.checked_mul(unit)),
        Some(Value::DoubleValue(d)) if d.is_finite() && *d >= 0.0 => Some((*d * unit as f64) as u64),
        Some(Value::StringValue(s)) => decimal(s.trim(), unit),
        _ => return Err("an epoch time must be a number or a string of digits".into()),
    };
    ns.ok_or_else(|| "the epoch time is not a non-negative number in range".into())
}

fn decimal(s: &str, unit: u64) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ns = int.parse::<u64>().ok()?.checked_mul(unit)?;
    let (mut scale, mut sub) = (unit, 0u64);
    for d in frac.bytes().take(18) {
        scale /= 10;
        sub += u64::from(d - b'0') * scale;
    }
    ns = ns.checked_add(sub)?;
    Some(ns)
}

/// A Go reference-time layout (`2006-01-02T15:04:05.000Z07:00`) as chrono items.
pub fn gotime(layout: &str) -> Result<Vec<Item<'static>>, String> {
    use Fixed as F;
    use Numeric as N;
    let num = |n: Numeric| Item::Numeric(n, Pad::Zero);
    let space = |n: Numeric| Item::Numeric(n, Pad::Space);
    // Longest first where one token starts another.
    let tokens: &[(&str, Item<'static>)] = &[
        ("January", Item::Fixed(F::LongMonthName)),
        ("Jan", Item::Fixed(F::ShortMonthName)),
        ("Monday", Item::Fixed(F::LongWeekdayName)),
        ("Mon", Item::Fixed(F::ShortWeekdayName)),
        ("MST", Item::Fixed(F::TimezoneName)),
        ("2006", num(N::Year)),
        ("Z07:00:00", Item::Fixed(F::TimezoneOffsetColonZ)),
        ("-07:00:00", Item::Fixed(F::TimezoneOffsetColon)),
        ("Z07:00", Item::Fixed(F::TimezoneOffsetColonZ)),
        ("-07:00", Item::Fixed(F::TimezoneOffsetColon)),
        ("Z0700", Item::Fixed(F::TimezoneOffsetZ)),
        ("-0700", Item::Fixed(F::TimezoneOffset)),
        ("Z07", Item::Fixed(F::TimezoneOffsetZ)),
        ("-07", Item::Fixed(F::TimezoneOffset)),
        ("002", num(N::Ordinal)),
        ("_2", space(N::Day)),
        ("01", num(N::Month)),
        ("02", num(N::Day)),
        ("03", num(N::Hour12)),
        ("04", num(N::Minute)),
        ("05", num(N::Second)),
        ("06", num(N::YearMod100)),
        ("15", num(N::Hour)),
        ("PM", Item::Fixed(F::UpperAmPm)),
        ("pm", Item::Fixed(F::LowerAmPm)),
        ("1", num(N::Month)),
        ("2", num(N::Day)),
        ("3", num(N::Hour12)),
        ("4", num(N::Minute)),
        ("5", num(N::Second)),
    ];
    if layout.is_empty() {
        return Err("the layout is empty".into());
    }
    let mut items = Vec::new();
    let mut rest = layout;
    let mut literal = String::new();
    let flush = |literal: &mut String, items: &mut Vec<Item<'static>>| {
        if !literal.is_empty() {
            items.push(Item::OwnedLiteral(std::mem::take(literal).into_boxed_str()));
        }
    };
    while !rest.is_empty() {
        // Fractional seconds: .000 / ,000 (exact digits) or .999 (any digits).
        let b = rest.as_bytes();
        if (b[0] == b'.' || b[0] == b',') && b.len() > 1 && (b[1] == b'0' || b[1] == b'9') {
            let digits = rest[1..].bytes().take_while(|d| *d == b[1]).count();
            if !rest[1 + digits..].starts_with(|c: char| c.is_ascii_digit()) {
                flush(&mut literal, &mut items);
                if b[1] == b'9' {
                    // .999: any number of digits, or none (the dot goes with them).
                    items.push(Item::Fixed(F::Nanosecond));
                } else {
                    items.push(Item::Literal(if b[0] == b'.' { "." } else { "," }));
                    let digits = match digits {
                        3 => "%3f",
                        6 => "%6f",
                        9 => "%9f",
                        _ => {
                            return Err(format!(
                                "\"{layout}\": write fractional seconds as .000, .000000 or .000000000"
                            ));
                        }
                    };
                    // Exactly that many digits, without the dot (chrono names it only this way).
                    items.extend(StrftimeItems::new(digits).parse_to_owned().map_err(|e| e.to_string())?);
                }
                rest = &rest[1 + digits..];
                continue;
            }
        }
        if let Some((tok, item)) = tokens.iter().find(|(t, _)| rest.starts_with(t)) {
            flush(&mut literal, &mut items);
            items.push(item.clone());
            rest = &rest[tok.len()..];
            // Go accepts fractional seconds after the seconds even when the layout has none.
            if matches!(item, Item::Numeric(N::Second, _))
                && !(rest.starts_with(".0")
                    || rest.starts_with(".9")
                    || rest.starts_with(",0")
                    || rest.starts_with(",9"))
            {
                items.push(Item::Fixed(F::Nanosecond));
            }
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        literal.push(c);
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut literal, &mut items);
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{int, string};

    fn parse(layout_type: LayoutType, layout: &str, location: Option<&str>, v: AnyValue) -> Result<u64, String> {
        let c = TimeConfig {
            parse_from: Some("body".into()),
            layout_type,
            layout: Some(layout.into()),
            location: location.map(str::to_string),
        };
        let p = TimeParser::build(&c, "timestamp").map_err(|e| e.1)?;
        let mut rec = Record::default();
        rec.log.body = Some(v);
        p.parse(&mut rec)?;
        Ok(rec.log.time_unix_nano)
    }

    #[test]
    fn layouts() {
        use LayoutType::*;
        let t = 1_709_287_200_000_000_000u64; // 2024-03-01T10:00:00Z
        type Case<'a> = (LayoutType, &'a str, Option<&'a str>, AnyValue, Result<u64, &'a str>);
        let cases: &[Case] = &[
            (Strptime, "%Y-%m-%dT%H:%M:%S.%LZ", Some("UTC"), string("2024-03-01T10:00:00.123Z"), Ok(t + 123_000_000)),
            (Strptime, "%Y-%m-%d %H:%M:%S,%L %z", None, string("2024-03-01 11:00:00,500 +0100"), Ok(t + 500_000_000)),
            (Strptime, "%Y-%m-%d %H:%M:%S", Some("Europe/Berlin"), string("2024-03-01 11:00:00"), Ok(t)),
            (Strptime, "%d/%b/%Y:%H:%M:%S %z", None, string("01/Mar/2024:10:00:00 +0000"), Ok(t)),
            (Strptime, "%Y-%m-%d", Some("UTC"), string("2024-03-01"), Ok(t - 36_000_000_000_000)),
            (Strptime, "%Y-%m-%d", Some("UTC"), string("not a date"), Err("does not follow")),
            (Strptime, "%Y-%m-%d", Some("UTC"), int(5), Err("not a string")),
            (Gotime, "2006-01-02T15:04:05Z07:00", None, string("2024-03-01T10:00:00.25Z"), Ok(t + 250_000_000)),
            (Gotime, "2006-01-02T15:04:05.000-07:00", None, string("2024-03-01T12:00:00.001+02:00"), Ok(t + 1_000_000)),
            (Gotime, "Jan _2 2006 15:04:05 MST", Some("UTC"), string("Mar  1 2024 10:00:00 UTC"), Ok(t)),
            (Epoch, "s", None, int(1_709_287_200), Ok(t)),
            (Epoch, "ms", None, string("1709287200123"), Ok(t + 123_000_000)),
            (Epoch, "s.us", None, string("1709287200.000042"), Ok(t + 42_000)),
            (Epoch, "s", None, AnyValue { value: Some(Value::DoubleValue(1_709_287_200.5)) }, Ok(t + 500_000_000)),
            (Epoch, "ns", None, string("12x"), Err("not a non-negative number")),
            (Epoch, "minutes", None, int(1), Err("epoch layout is")),
            (Strptime, "%Y-%Q", None, string("x"), Err("unknown directive %Q")),
            (Strptime, "%Y", Some("Mars/Olympus"), string("2024"), Err("IANA")),
        ];
        for (lt, layout, loc, v, want) in cases {
            let got = parse(*lt, layout, *loc, v.clone());
            match want {
                Ok(ns) => assert_eq!(got, Ok(*ns), "{layout}"),
                Err(why) => assert!(got.as_ref().is_err_and(|e| e.contains(why)), "{layout}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_layout_without_a_year_takes_this_one() {
        let ns = parse(LayoutType::Strptime, "%b %e %H:%M:%S", Some("UTC"), string("Mar  1 10:00:00")).unwrap();
        let year = chrono::DateTime::from_timestamp_nanos(ns as i64).year();
        assert_eq!(year, chrono::Utc::now().year());
    }

    #[test]
    fn required_keys_are_named() {
        let e = TimeParser::build(&TimeConfig::default(), "operators.1.timestamp").unwrap_err();
        assert_eq!(e.0, "operators.1.timestamp.parse_from");
        let c = TimeConfig { parse_from: Some("body.t".into()), ..Default::default() };
        assert_eq!(TimeParser::build(&c, "operators.1.timestamp").unwrap_err().0, "operators.1.timestamp.layout");
    }
}
