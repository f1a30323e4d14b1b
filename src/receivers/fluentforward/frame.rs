//! Finding where one msgpack value ends in a byte stream without decoding it (and so without
//! allocating what a forged length declares): `Complete(len)`, `Incomplete` (read more) or
//! `Invalid`. Lengths past `limit` are refused before anything is read.

#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    Complete(usize),
    Incomplete,
    Invalid(String),
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    limit: usize,
}

enum Step {
    More,
    Bad(String),
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<(), Step> {
        if n > self.limit {
            return Err(Step::Bad(format!("a msgpack value declares {n} bytes, over the {} allowed", self.limit)));
        }
        if self.pos + n > self.b.len() {
            return Err(Step::More);
        }
        self.pos += n;
        Ok(())
    }

    fn uint(&mut self, n: usize) -> Result<usize, Step> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.b[start..start + n]
            .iter()
            .fold(0usize, |acc, x| acc.saturating_mul(256).saturating_add(usize::from(*x))))
    }

    /// Skips one value; `depth` bounds nesting.
    fn value(&mut self, depth: usize) -> Result<(), Step> {
        if depth > 64 {
            return Err(Step::Bad("msgpack nested too deep".into()));
        }
        let start = self.pos;
        self.take(1)?;
        let m = self.b[start];
        let (items, kv) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => return Ok(()),
            0x80..=0x8f => (usize::from(m & 0x0f), true),
            0x90..=0x9f => (usize::from(m & 0x0f), false),
            0xa0..=0xbf => return self.take(usize::from(m & 0x1f)),
            0xc4 | 0xd9 => return self.uint(1).and_then(|n| self.take(n)),
            0xc5 | 0xda => return self.uint(2).and_then(|n| self.take(n)),
            0xc6 | 0xdb => return self.uint(4).and_then(|n| self.take(n)),
            0xc7 => return self.uint(1).and_then(|n| self.take(n + 1)),
            0xc8 => return self.uint(2).and_then(|n| self.take(n + 1)),
            0xc9 => return self.uint(4).and_then(|n| self.take(n.saturating_add(1))),
            0xca | 0xce | 0xd2 => return self.take(4),
            0xcb | 0xcf | 0xd3 => return self.take(8),
            0xcc | 0xd0 => return self.take(1),
            0xcd | 0xd1 => return self.take(2),
            0xd4 => return self.take(2),
            0xd5 => return self.take(3),
            0xd6 => return self.take(5),
            0xd7 => return self.take(9),
            0xd8 => return self.take(17),
            0xdc => (self.uint(2)?, false),
            0xdd => (self.uint(4)?, false),
            0xde => (self.uint(2)?, true),
            0xdf => (self.uint(4)?, true),
            0xc1 => return Err(Step::Bad("invalid msgpack byte 0xc1".into())),
        };
        // Each element takes at least one byte: a count past what is left cannot be complete, and
        // past the limit it is refused.
        if items > self.limit {
            return Err(Step::Bad(format!("a msgpack container declares {items} elements")));
        }
        for _ in 0..items * if kv { 2 } else { 1 } {
            self.value(depth + 1)?;
        }
        Ok(())
    }
}

/// Where the value at the start of `b` ends, allowing at most `limit` bytes for it.
pub fn scan(b: &[u8], limit: usize) -> Scan {
    let mut c = Cursor { b, pos: 0, limit };
    match c.value(0) {
        Ok(()) if c.pos > limit => {
            Scan::Invalid(format!("a msgpack value of {} bytes, over the {limit} allowed", c.pos))
        }
        Ok(()) => Scan::Complete(c.pos),
        Err(Step::More) if b.len() > limit => Scan::Invalid(format!("a msgpack value over the {limit} bytes allowed")),
        Err(Step::More) => Scan::Incomplete,
        Err(Step::Bad(m)) => Scan::Invalid(m),
    }
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
    fn a_forged_gigabyte_is_refused_at_once() {
        // bin32 declaring 1 GiB.
        let frame = [0x93, 0xa1, b't', 0xc6, 0x40, 0x00, 0x00, 0x00, 1, 2, 3];
        assert!(matches!(scan(&frame, 16 << 20), Scan::Invalid(m) if m.contains("1073741824")));
        assert!(matches!(scan(&[0xc1], 100), Scan::Invalid(_)));
    }
}
