//! A look at protobuf bytes before prost decodes them: how deep they nest and how many fields
//! they hold, without knowing the schema. switchyard lifts prost's recursion limit so that deep
//! OTLP values decode (the OTLP scan bounds those); every other protobuf decoder — Jaeger,
//! Zipkin, remote write, answers from backends — checks its input here first, so that nested
//! groups or messages cannot recurse without bound, and so that it knows the number of fields
//! (each becomes at most one value or struct) before building anything.

/// Nesting taken in the protocols checked here; their schemas nest a few levels, so anything
/// this deep is an attack or garbage.
pub const MAX_DEPTH: u32 = 32;

/// What the look found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Fields seen, counting those inside every length-delimited value that reads as a message
    /// (so strings that happen to look like messages count too: an over-estimate).
    pub fields: usize,
}

impl Shape {
    /// An upper bound of what decoding allocates, for the memory budget: the bytes themselves
    /// plus `per_field` for each field.
    pub fn estimate(&self, len: usize, per_field: usize) -> usize {
        len.saturating_add(self.fields.saturating_mul(per_field))
    }
}

/// Checks that `buf` nests at most `MAX_DEPTH` messages and groups deep. Bytes that do not read
/// as protobuf at all are left for the decoder to refuse with its own message.
pub fn check(buf: &[u8]) -> Result<Shape, String> {
    let mut look = Look { fields: 0, work: 0, work_limit: buf.len().saturating_mul(MAX_DEPTH as usize / 2) + 4096 };
    match look.message(buf, 0) {
        Err(Stop::TooDeep) => Err(format!("nested more than {MAX_DEPTH} levels deep")),
        Err(Stop::TooMuchWork) => Err("too many nested values to decode".to_string()),
        Ok(_) => Ok(Shape { fields: look.fields }),
    }
}

enum Stop {
    TooDeep,
    TooMuchWork,
}

struct Look {
    fields: usize,
    /// Bytes walked, counting a byte again at each level it is walked at; bounded so that
    /// nested values cannot make the look quadratic.
    work: usize,
    work_limit: usize,
}

impl Look {
    /// Walks `buf` as a message at `depth`; `Ok(false)` when it is not one.
    fn message(&mut self, buf: &[u8], depth: u32) -> Result<bool, Stop> {
        self.work = self.work.saturating_add(buf.len());
        if self.work > self.work_limit {
            return Err(Stop::TooMuchWork);
        }
        let mut pos = 0;
        let mut groups: Vec<u32> = Vec::new();
        while pos < buf.len() {
            let Some(key) = varint(buf, &mut pos) else { return Ok(false) };
            let (number, wire) = (key >> 3, key & 7);
            if number == 0 || number > u64::from(u32::MAX >> 3) {
                return Ok(false);
            }
            self.fields += 1;
            match wire {
                0 => {
                    if varint(buf, &mut pos).is_none() {
                        return Ok(false);
                    }
                }
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    if buf.len() - pos < n {
                        return Ok(false);
                    }
                    pos += n;
                }
                2 => {
                    let Some(len) = varint(buf, &mut pos).and_then(|l| usize::try_from(l).ok()) else {
                        return Ok(false);
                    };
                    if buf.len() - pos < len {
                        return Ok(false);
                    }
                    let inner = &buf[pos..pos + len];
                    pos += len;
                    let level = depth + groups.len() as u32 + 1;
                    if !inner.is_empty() && level <= MAX_DEPTH {
                        // Maybe a message, maybe a string: looked into either way.
                        let before = self.fields;
                        if !self.message(inner, level)? {
                            self.fields = before;
                        }
                    }
                }
                3 => {
                    groups.push(number as u32);
                    if depth + groups.len() as u32 > MAX_DEPTH {
                        return Err(Stop::TooDeep);
                    }
                }
                4 => {
                    if groups.pop() != Some(number as u32) {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
        }
        Ok(groups.is_empty())
    }
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_groups_are_refused_before_prost_sees_them() {
        // Field 1 as a start-group tag, 100,000 times: prost without a recursion limit would
        // recurse once per level and overflow the stack.
        let bomb = vec![0x0b_u8; 100_000];
        assert!(check(&bomb).unwrap_err().contains("nested"));
        // Inside a length-delimited field too.
        let mut wrapped = vec![0x0a, 0xa0, 0x8d, 0x06];
        wrapped.extend(vec![0x0b_u8; 100_000]);
        assert!(check(&wrapped).is_err());
    }

    #[test]
    fn nested_messages_are_bounded_and_ordinary_ones_counted() {
        let mut msg: Vec<u8> = vec![0x08, 0x01];
        for _ in 0..40 {
            let mut outer = vec![0x0a, msg.len() as u8];
            if msg.len() > 127 {
                break;
            }
            outer.extend(&msg);
            msg = outer;
        }
        // 40 levels of length-delimited messages are looked into only to MAX_DEPTH: fine.
        assert!(check(&msg).is_ok());
        // A plain message: three fields (varint, string, fixed64).
        let plain = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 0, 0, 0, 0, 0, 0, 0, 0];
        let shape = check(&plain).unwrap();
        assert!(shape.fields >= 3);
        assert!(check(b"not protobuf at all").is_ok(), "left for the decoder to refuse");
    }
}
