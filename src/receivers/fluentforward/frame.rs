//! Finding where one msgpack value ends in a byte stream without decoding it (and so without
//! allocating what a forged length declares): `Complete(len)`, `Incomplete` (read more) or
//! `Invalid`. Lengths past `limit` are refused before anything is read, and so are messages of
//! more values than `limit / 16` (each decoded value costs tens of bytes, so a message of
//! one-byte values would otherwise decode to forty times its size). The `Scanner` resumes where
//! it stopped when more bytes arrive, so a large message costs one pass however it is cut.

#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    Complete(usize),
    Incomplete,
    Invalid(String),
}

/// How many msgpack values a message of up to `limit` bytes may hold.
pub fn value_budget(limit: usize) -> usize {
    (limit / 16).max(4096)
}

/// Walks one msgpack value as its bytes arrive.
pub struct Scanner {
    limit: usize,
    max_values: usize,
    /// Where the next value header starts.
    pos: usize,
    /// Values still to read in each open container, innermost last.
    open: Vec<usize>,
    values: usize,
}

/// What the value header at a position says: its length with any payload, and how many values
/// it contains (for arrays and maps).
enum Header {
    Scalar(usize),
    Container(usize, usize),
}

impl Scanner {
    pub fn new(limit: usize) -> Scanner {
        Scanner::with_budget(limit, value_budget(limit))
    }

    /// A scanner allowing at most `max_values` values (what is left of a message's budget).
    pub fn with_budget(limit: usize, max_values: usize) -> Scanner {
        Scanner { limit, max_values, pos: 0, open: Vec::new(), values: 0 }
    }

    /// Values walked so far.
    pub fn values(&self) -> usize {
        self.values
    }

    /// `b` is the message so far (from its first byte); call again with more appended.
    pub fn feed(&mut self, b: &[u8]) -> Scan {
        loop {
            let header = match self.header(b) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    return if b.len() > self.limit {
                        Scan::Invalid(format!("a msgpack value over the {} bytes allowed", self.limit))
                    } else {
                        Scan::Incomplete
                    };
                }
                Err(m) => return Scan::Invalid(m),
            };
            let len = match header {
                Header::Scalar(len) | Header::Container(len, _) => len,
            };
            let end = self.pos.saturating_add(len);
            if end > self.limit {
                return Scan::Invalid(format!("a msgpack value declares {len} bytes, over the {} allowed", self.limit));
            }
            if end > b.len() {
                return Scan::Incomplete; // the header is read again with the payload
            }
            self.values += 1;
            if self.values > self.max_values {
                return Scan::Invalid(format!("a msgpack message of more than {} values", self.max_values));
            }
            self.pos = end;
            if let Header::Container(_, n) = header {
                if n > self.limit {
                    return Scan::Invalid(format!("a msgpack container declares {n} elements"));
                }
                if n > 0 {
                    if self.open.len() >= 64 {
                        return Scan::Invalid("msgpack nested too deep".into());
                    }
                    self.open.push(n);
                    continue;
                }
            }
            // A value is complete: count it off its containers.
            loop {
                match self.open.last_mut() {
                    None => return Scan::Complete(self.pos),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }

    /// The header at `pos`, or `None` when its bytes have not all arrived.
    fn header(&self, b: &[u8]) -> Result<Option<Header>, String> {
        let Some(&m) = b.get(self.pos) else { return Ok(None) };
        let uint = |n: usize| -> Option<usize> {
            let bytes = b.get(self.pos + 1..self.pos + 1 + n)?;
            Some(bytes.iter().fold(0usize, |acc, x| acc.saturating_mul(256).saturating_add(usize::from(*x))))
        };
        let sized = |n: usize, extra: usize| uint(n).map(|len| Header::Scalar(1 + n + extra + len));
        let counted = |n: usize, per: usize| uint(n).map(|c| Header::Container(1 + n, c.saturating_mul(per)));
        Ok(match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some(Header::Scalar(1)),
            0x80..=0x8f => Some(Header::Container(1, usize::from(m & 0x0f) * 2)),
            0x90..=0x9f => Some(Header::Container(1, usize::from(m & 0x0f))),
            0xa0..=0xbf => Some(Header::Scalar(1 + usize::from(m & 0x1f))),
            0xc4 | 0xd9 => sized(1, 0),
            0xc5 | 0xda => sized(2, 0),
            0xc6 | 0xdb => sized(4, 0),
            0xc7 => sized(1, 1),
            0xc8 => sized(2, 1),
            0xc9 => sized(4, 1),
            0xca | 0xce | 0xd2 => Some(Header::Scalar(5)),
            0xcb | 0xcf | 0xd3 => Some(Header::Scalar(9)),
            0xcc | 0xd0 => Some(Header::Scalar(2)),
            0xcd | 0xd1 => Some(Header::Scalar(3)),
            0xd4 => Some(Header::Scalar(3)),
            0xd5 => Some(Header::Scalar(4)),
            0xd6 => Some(Header::Scalar(6)),
            0xd7 => Some(Header::Scalar(10)),
            0xd8 => Some(Header::Scalar(18)),
            0xdc => counted(2, 1),
            0xdd => counted(4, 1),
            0xde => counted(2, 2),
            0xdf => counted(4, 2),
            0xc1 => return Err("invalid msgpack byte 0xc1".into()),
        })
    }
}

/// Where the value at the start of `b` ends, allowing at most `limit` bytes for it.
/// The length of a forward message's tag (its first element, a msgpack string), read from the
/// headers alone; 0 when the message does not start that way.
pub fn tag_len(message: &[u8]) -> usize {
    let at = match message.first() {
        Some(0x90..=0x9f) => 1,
        Some(0xdc) => 3,
        Some(0xdd) => 5,
        _ => return 0,
    };
    let byte = |i: usize| message.get(i).copied().map(usize::from);
    match message.get(at) {
        Some(&b @ 0xa0..=0xbf) => usize::from(b & 0x1f),
        Some(0xd9) => byte(at + 1).unwrap_or(0),
        Some(0xda) => byte(at + 1).zip(byte(at + 2)).map(|(h, l)| (h << 8) | l).unwrap_or(0),
        Some(0xdb) => (1..=4).map(|k| byte(at + k).unwrap_or(0)).fold(0, |acc, b| (acc << 8) | b),
        _ => 0,
    }
}

#[cfg(test)]
pub fn scan(b: &[u8], limit: usize) -> Scan {
    Scanner::new(limit).feed(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    #[test]
    fn finds_the_end_of_real_values_and_waits_for_the_rest() {
        use rmpv::Value;
        let v = Value::Array(vec![
            Value::from("app.tag"),
            Value::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 2]),
            Value::Map(vec![
                (Value::from("message"), Value::from("x".repeat(300))),
                (Value::from("n"), Value::from(-5)),
            ]),
            Value::Map(vec![(Value::from("chunk"), Value::from("abc"))]),
        ]);
        let bytes = encode(&v);
        assert_eq!(scan(&bytes, 1 << 20), Scan::Complete(bytes.len()));
        for cut in 0..bytes.len() {
            assert_eq!(scan(&bytes[..cut], 1 << 20), Scan::Incomplete, "cut at {cut}");
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(scan(&two, 1 << 20), Scan::Complete(bytes.len()));
    }

    #[test]
    fn a_scanner_fed_piece_by_piece_finds_the_same_end() {
        use rmpv::Value;
        let records: Vec<Value> = (0..500)
            .map(|i| {
                Value::Array(vec![Value::from(i), Value::Map(vec![(Value::from("log"), Value::from("y".repeat(i)))])])
            })
            .collect();
        let bytes = encode(&Value::Array(vec![Value::from("tag"), Value::Array(records)]));
        for step in [1, 7, 4096] {
            let mut s = Scanner::new(1 << 20);
            let mut end = None;
            for upto in (step..bytes.len() + step).step_by(step) {
                match s.feed(&bytes[..upto.min(bytes.len())]) {
                    Scan::Complete(n) => {
                        end = Some((n, upto));
                        break;
                    }
                    Scan::Incomplete => {}
                    Scan::Invalid(m) => panic!("{m}"),
                }
            }
            let (n, upto) = end.expect("complete");
            assert_eq!(n, bytes.len(), "step {step}");
            assert!(upto.min(bytes.len()) == bytes.len(), "completed only once every byte was there");
        }
    }

    #[test]
    fn a_message_of_too_many_tiny_values_is_refused() {
        // 100,000 one-byte values in 100 KiB: fine as bytes, but too many values for the limit.
        let mut bytes = vec![0xdd, 0x00, 0x01, 0x86, 0xa0];
        bytes.extend(std::iter::repeat_n(0x01, 100_000));
        assert_eq!(scan(&bytes, 1 << 30), Scan::Complete(bytes.len()));
        assert!(matches!(scan(&bytes, 1 << 20), Scan::Invalid(m) if m.contains("values")));
    }

    #[test]
    fn a_forged_gigabyte_is_refused_at_once() {
        // bin32 declaring 1 GiB.
        let frame = [0x93, 0xa1, b't', 0xc6, 0x40, 0x00, 0x00, 0x00, 1, 2, 3];
        assert!(matches!(scan(&frame, 16 << 20), Scan::Invalid(m) if m.contains("1073741829 bytes")));
        assert!(matches!(scan(&[0xc1], 100), Scan::Invalid(_)));
    }

    #[test]
    fn the_tag_length_is_read_from_the_headers() {
        let message = rmpv::Value::Array(vec![rmpv::Value::from("app.web"), rmpv::Value::from(1)]);
        assert_eq!(tag_len(&encode(&message)), 7);
        let long = rmpv::Value::Array(vec![rmpv::Value::from("t".repeat(70_000)), rmpv::Value::from(1)]);
        assert_eq!(tag_len(&encode(&long)), 70_000);
        assert_eq!(tag_len(b""), 0);
        assert_eq!(tag_len(&[0x92, 0x01]), 0, "no string first");
    }
}
