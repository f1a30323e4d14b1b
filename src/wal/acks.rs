//! The acknowledgements file of a log: a watermark (every record below it is done with) and the
//! records done with above it, checksummed, replaced whole through a rename so that a crash
//! leaves either the old file or the new one. A missing or damaged file means nothing was
//! acknowledged: the records are read again (delivered twice rather than lost).

use std::collections::BTreeSet;
use std::path::Path;

pub const FILE: &str = "acks";
const MAGIC: [u8; 4] = *b"SYWA";

#[derive(Debug, Default)]
pub struct Acks {
    pub watermark: u64,
    pub done: BTreeSet<u64>,
}

pub fn read(path: &Path) -> Acks {
    let Ok(bytes) = std::fs::read(path) else { return Acks::default() };
    match parse(&bytes) {
        Some(acks) => acks,
        None => {
            tracing::warn!(file = %path.display(), "persistent queue: acknowledgements file is damaged; undelivered records may be sent again");
            Acks::default()
        }
    }
}

fn parse(bytes: &[u8]) -> Option<Acks> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if body.get(..4)? != MAGIC || crc32c::crc32c(body).to_le_bytes() != crc {
        return None;
    }
    let watermark = u64::from_le_bytes(body.get(4..12)?.try_into().ok()?);
    let n = u32::from_le_bytes(body.get(12..16)?.try_into().ok()?) as usize;
    let seqs = body.get(16..)?;
    if seqs.len() != n * 8 {
        return None;
    }
    let done = seqs.chunks_exact(8).filter_map(|c| c.try_into().ok().map(u64::from_le_bytes)).collect();
    Some(Acks { watermark, done })
}

pub fn write(dir: &Path, watermark: u64, done: &[u64], fsync: bool) -> Result<(), String> {
    let mut body = Vec::with_capacity(20 + done.len() * 8);
    body.extend_from_slice(&MAGIC);
    body.extend_from_slice(&watermark.to_le_bytes());
    body.extend_from_slice(&(done.len() as u32).to_le_bytes());
    for s in done {
        body.extend_from_slice(&s.to_le_bytes());
    }
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("acks.tmp");
    let fail = |e: std::io::Error| format!("cannot write the acknowledgements in {}: {e}", dir.display());
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&body).map_err(fail)?;
        if fsync {
            f.sync_data().map_err(fail)?;
        }
    }
    std::fs::rename(&tmp, dir.join(FILE)).map_err(fail)?;
    if fsync {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_acks_read_back_and_damage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 42, &[44, 47], false).unwrap();
        let acks = read(&dir.path().join(FILE));
        assert_eq!(acks.watermark, 42);
        assert_eq!(acks.done.into_iter().collect::<Vec<_>>(), vec![44, 47]);
        let mut bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        bytes[6] ^= 1;
        std::fs::write(dir.path().join(FILE), &bytes).unwrap();
        assert_eq!(read(&dir.path().join(FILE)).watermark, 0);
    }
}
