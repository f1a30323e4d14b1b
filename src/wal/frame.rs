//! How one record sits in a segment file: a fixed header (a marker, the payload's length, the
//! record's sequence number, a CRC-32C over all of them and the payload) and then the payload.
//! The marker and the checksum let a scan find the next good record after damaged bytes.

/// Marks the start of a record ("SYWL").
pub const MAGIC: [u8; 4] = *b"SYWL";

/// Bytes before the payload: marker, length (u32), sequence number (u64), checksum (u32).
pub const HEADER: usize = 4 + 4 + 8 + 4;

/// The largest payload a record may carry; a length above it in a header is damage.
pub const MAX_PAYLOAD: usize = 1 << 30;

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(0, &len);
    let crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Appends the framed record to `out`.
pub fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A header read back: what the record claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub seq: u64,
    crc: u32,
}

impl Header {
    /// Parses a header, or `None` when the marker is wrong or the length impossible.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER || bytes[..4] != MAGIC {
            return None;
        }
        let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
        let seq = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
        let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
        (len <= MAX_PAYLOAD).then_some(Header { len, seq, crc })
    }

    /// Whether `payload` is what this header was written with.
    pub fn matches(&self, payload: &[u8]) -> bool {
        payload.len() == self.len && checksum(self.seq, payload) == self.crc
    }
}

/// What a scan of a segment's bytes found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Good records: sequence number, offset of the header, payload length.
    pub records: Vec<(u64, u64, usize)>,
    /// Damaged byte ranges skipped, `[start, end)`.
    pub damaged: Vec<(u64, u64)>,
    /// Where the last good record ends: what follows it is damage or a torn write.
    pub good_end: u64,
}

/// Walks `bytes` (a whole segment) record by record. Damaged bytes (a bad marker, an impossible
/// length, a checksum that does not match) are skipped up to the next place where a whole good
/// record starts; a damaged range with no good record after it is a torn or damaged tail.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut at = 0usize;
    let mut damage_from: Option<usize> = None;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Some((header, next)) => {
                if let Some(from) = damage_from.take() {
                    out.damaged.push((from as u64, at as u64));
                }
                out.records.push((header.seq, at as u64, header.len));
                at = next;
                out.good_end = at as u64;
            }
            None => {
                damage_from.get_or_insert(at);
                // Look for the next marker after this position.
                at = match find_marker(&bytes[at + 1..]) {
                    Some(i) => at + 1 + i,
                    None => bytes.len(),
                };
            }
        }
    }
    if let Some(from) = damage_from {
        out.damaged.push((from as u64, bytes.len() as u64));
    }
    out
}

/// The good record at `at` and where the next one starts.
fn record_at(bytes: &[u8], at: usize) -> Option<(Header, usize)> {
    let header = Header::parse(bytes.get(at..at + HEADER)?)?;
    let end = at.checked_add(HEADER)?.checked_add(header.len)?;
    let payload = bytes.get(at + HEADER..end)?;
    header.matches(payload).then_some((header, end))
}

fn find_marker(bytes: &[u8]) -> Option<usize> {
    bytes.windows(MAGIC.len()).position(|w| w == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (seq, payload) in records {
            encode(*seq, payload, &mut out);
        }
        out
    }

    #[test]
    fn records_read_back_as_written() {
        let bytes = log(&[(1, b"one"), (2, b""), (3, b"three")]);
        let scan = scan(&bytes);
        assert_eq!(scan.records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(scan.damaged.is_empty());
        assert_eq!(scan.good_end, bytes.len() as u64);
    }

    #[test]
    fn a_torn_tail_ends_at_the_last_good_record() {
        let bytes = log(&[(1, b"one"), (2, b"two")]);
        let whole = log(&[(1, b"one")]).len();
        for cut in whole + 1..bytes.len() {
            let scan = scan(&bytes[..cut]);
            assert_eq!(scan.records.len(), 1, "cut at {cut}");
            assert_eq!(scan.good_end, whole as u64);
            assert_eq!(scan.damaged, vec![(whole as u64, cut as u64)]);
        }
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let bytes = log(&[(1, b"first record"), (2, b"second record"), (3, b"third record")]);
        let second = log(&[(1, b"first record")]).len();
        // Any single flipped byte of the second record: header or payload.
        for i in second..second + HEADER + 13 {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            let scan = scan(&damaged);
            let seqs: Vec<u64> = scan.records.iter().map(|r| r.0).collect();
            assert_eq!(seqs, vec![1, 3], "flipped byte {i}");
            assert_eq!(scan.damaged.len(), 1);
        }
    }

    #[test]
    fn garbage_is_not_mistaken_for_records() {
        let mut bytes = b"SYWL\xff\xff\xff\xffgarbage that looks like a marker".to_vec();
        bytes.extend(log(&[(7, b"ok")]));
        let scan = scan(&bytes);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.records[0].0, 7);
    }
}
