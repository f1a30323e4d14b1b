//! The consistent-hash ring that picks a backend for each routing key, placed exactly as the
//! collector's `loadbalancing` exporter places it, so that a fleet of switchyard and collector
//! instances in front of the same backends sends each trace to the same one: 100 points per
//! endpoint at CRC-32 (IEEE) of the endpoint's bytes followed by one byte 0..99, modulo 36,000,
//! a point already taken left to the endpoint placed first (endpoints in sorted order); a key
//! goes to the first point at or after CRC-32 of the key modulo 36,000, wrapping around.

/// Positions on the ring.
pub const MAX_POSITIONS: u32 = 36_000;
/// Points per endpoint.
pub const POINTS: u8 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// Sorted and without duplicates.
    endpoints: Vec<String>,
    /// (position, index into `endpoints`), by position.
    points: Vec<(u32, usize)>,
}

impl Ring {
    pub fn new(endpoints: impl IntoIterator<Item = String>) -> Ring {
        let mut endpoints: Vec<String> = endpoints.into_iter().collect();
        endpoints.sort();
        endpoints.dedup();
        let mut taken = vec![false; MAX_POSITIONS as usize];
        let mut points = Vec::with_capacity(endpoints.len() * POINTS as usize);
        for (e, endpoint) in endpoints.iter().enumerate() {
            for i in 0..POINTS {
                let mut h = crc32fast::Hasher::new();
                h.update(endpoint.as_bytes());
                h.update(&[i]);
                let position = h.finalize() % MAX_POSITIONS;
                if !std::mem::replace(&mut taken[position as usize], true) {
                    points.push((position, e));
                }
            }
        }
        points.sort_unstable();
        Ring { endpoints, points }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The index (into `endpoints`) of the endpoint `key` goes to; none on an empty ring.
    pub fn index_of(&self, key: &[u8]) -> Option<usize> {
        let first = self.points.first()?;
        let at = crc32fast::hash(key) % MAX_POSITIONS;
        let i = self.points.partition_point(|(p, _)| *p < at);
        Some(self.points.get(i).unwrap_or(first).1)
    }

    /// The endpoint `key` goes to.
    pub fn endpoint(&self, key: &[u8]) -> Option<&str> {
        self.index_of(key).map(|i| self.endpoints[i].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected placements computed with an independent implementation (Python's zlib.crc32
    /// over the same rule), so that a change of hash or rule shows here.
    #[test]
    fn keys_land_where_the_collectors_ring_puts_them() {
        let ring =
            Ring::new(["backend-3:4317", "backend-1:4317", "backend-2:4317", "backend-1:4317"].map(String::from));
        assert_eq!(ring.endpoints().len(), 3);
        assert_eq!(ring.points.len(), 297, "three points collided and went to the endpoint placed first");
        assert_eq!(ring.points[..3], [(44, 1), (107, 1), (304, 2)]);
        let want = [
            "backend-3:4317",
            "backend-2:4317",
            "backend-1:4317",
            "backend-2:4317",
            "backend-2:4317",
            "backend-2:4317",
            "backend-1:4317",
            "backend-2:4317",
        ];
        for (k, want) in (1u8..=8).zip(want) {
            assert_eq!(ring.endpoint(&[k; 16]), Some(want), "trace id {k:02x}…");
        }
        let ids: Vec<u8> = (0..16).collect();
        assert_eq!(ring.endpoint(&ids), Some("backend-1:4317"));
        assert_eq!(Ring::new(Vec::new()).endpoint(b"x"), None);
    }

    #[test]
    fn a_backend_leaving_moves_only_its_own_keys() {
        let all = Ring::new((1..=4).map(|i| format!("b{i}:4317")));
        let three = Ring::new((1..=3).map(|i| format!("b{i}:4317")));
        let mut moved = 0;
        for n in 0u32..10_000 {
            let key = n.to_be_bytes().repeat(4);
            let (before, after) = (all.endpoint(&key).unwrap(), three.endpoint(&key).unwrap());
            if before != "b4:4317" {
                assert_eq!(before, after, "a key of a backend that stays does not move");
            } else {
                moved += 1;
            }
        }
        assert!((1_500..3_500).contains(&moved), "about a quarter of the keys were on b4: {moved}");
    }
}
