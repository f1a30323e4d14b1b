//! Outgoing compression for the OTLP exporters: the `compression` and `compression_params` keys
//! and the one codec both exporters use. Level 1 is the default: it costs the least CPU per span
//! (see docs/BENCHMARKS.md).

use serde::Deserialize;
use std::io::Write;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// `compression_params`: how hard to compress.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// gzip 1 (fastest) to 9, zstd 1 to 22; unset means 1.
    #[serde(default)]
    pub level: Option<i32>,
}

/// A compression kind with its level, ready to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compressor {
    kind: Compression,
    level: i32,
}

impl Compressor {
    pub fn new(kind: Compression, params: &CompressionParams) -> Compressor {
        Compressor { kind, level: params.level.unwrap_or(1) }
    }

    /// Checks `compression_params.level` against the kind's range.
    pub fn validate(kind: Compression, params: &CompressionParams) -> Result<(), (String, String)> {
        let Some(level) = params.level else { return Ok(()) };
        let range = match kind {
            Compression::Gzip => 1..=9,
            Compression::Zstd => 1..=22,
            Compression::None => return Ok(()),
        };
        if range.contains(&level) {
            Ok(())
        } else {
            Err(("compression_params.level".into(), format!("must be in {range:?} for {kind:?}")))
        }
    }

    /// The name for `Content-Encoding` / `grpc-encoding`; `None` when nothing is compressed.
    pub fn encoding(&self) -> Option<&'static str> {
        match self.kind {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }

    /// The compressed bytes, or `None` when compression is off.
    pub fn compress(&self, data: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.kind {
            Compression::None => Ok(None),
            Compression::Gzip => {
                let level = flate2::Compression::new(self.level.clamp(1, 9) as u32);
                let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), level);
                enc.write_all(data).map_err(|e| e.to_string())?;
                enc.finish().map(Some).map_err(|e| e.to_string())
            }
            Compression::Zstd => zstd::encode_all(data, self.level).map(Some).map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_and_levels() {
        let data = b"span ".repeat(1000);
        let gz = Compressor::new(Compression::Gzip, &CompressionParams::default()).compress(&data).unwrap().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let zs =
            Compressor::new(Compression::Zstd, &CompressionParams { level: Some(3) }).compress(&data).unwrap().unwrap();
        assert_eq!(zstd::decode_all(&zs[..]).unwrap(), data);
        assert_eq!(Compressor::new(Compression::None, &CompressionParams::default()).compress(&data).unwrap(), None);
        assert!(Compressor::validate(Compression::Gzip, &CompressionParams { level: Some(12) }).is_err());
        assert!(Compressor::validate(Compression::Zstd, &CompressionParams { level: Some(12) }).is_ok());
    }
}
