//! Consumer-group offsets on the wire: FindCoordinator v0, OffsetFetch v1 and OffsetCommit v2
//! (versions every broker from 0.10 to 4.x answers), over a connection of their own. switchyard
//! commits as a standalone member (generation -1, no member id): it reads every partition of
//! its topic itself and does not take part in group rebalancing.

use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIND_COORDINATOR: i16 = 10;
const OFFSET_FETCH: i16 = 9;
const OFFSET_COMMIT: i16 = 8;

struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.i16(s.len() as i16);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("truncated Kafka response".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// A string or nullable string (length -1 is null, read as empty).
    fn string(&mut self) -> Result<String, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(String::new());
        }
        Ok(String::from_utf8_lossy(self.take(n as usize)?).into_owned())
    }
    /// An array length, checked against what is left (each element is at least `min` bytes).
    fn count(&mut self, min: usize) -> Result<usize, String> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(0);
        }
        if (n as usize).saturating_mul(min) > self.0.len() {
            return Err("Kafka response array longer than the response".into());
        }
        Ok(n as usize)
    }
}

/// One broker connection for group requests.
pub struct GroupClient {
    stream: TcpStream,
    client_id: String,
    correlation: i32,
    group: String,
}

fn error_name(code: i16) -> String {
    match code {
        15 => "COORDINATOR_NOT_AVAILABLE".into(),
        14 => "COORDINATOR_LOAD_IN_PROGRESS".into(),
        16 => "NOT_COORDINATOR".into(),
        22 => "ILLEGAL_GENERATION".into(),
        25 => "UNKNOWN_MEMBER_ID".into(),
        27 => "REBALANCE_IN_PROGRESS".into(),
        30 => "GROUP_AUTHORIZATION_FAILED".into(),
        3 => "UNKNOWN_TOPIC_OR_PARTITION".into(),
        other => format!("error code {other}"),
    }
}

impl GroupClient {
    /// Connects to the group's coordinator, found through any of `brokers`.
    pub async fn connect(brokers: &[String], client_id: &str, group: &str) -> Result<GroupClient, String> {
        let mut last = String::from("no brokers");
        for b in brokers {
            match TcpStream::connect(b).await {
                Ok(stream) => {
                    let mut c =
                        GroupClient { stream, client_id: client_id.into(), correlation: 0, group: group.into() };
                    let mut w = Writer(Vec::new());
                    w.string(group);
                    let body = c.call(FIND_COORDINATOR, 0, w.0).await?;
                    let mut r = Reader(&body);
                    let code = r.i16()?;
                    if code != 0 {
                        last = format!("FindCoordinator for group {group}: {}", error_name(code));
                        continue;
                    }
                    let _node = r.i32()?;
                    let host = r.string()?;
                    let port = r.i32()?;
                    let stream = TcpStream::connect((host.as_str(), port as u16))
                        .await
                        .map_err(|e| format!("group coordinator {host}:{port}: {e}"))?;
                    c.stream = stream;
                    return Ok(c);
                }
                Err(e) => last = format!("{b}: {e}"),
            }
        }
        Err(last)
    }

    async fn call(&mut self, api_key: i16, version: i16, body: Vec<u8>) -> Result<Vec<u8>, String> {
        self.correlation += 1;
        let mut w = Writer(Vec::with_capacity(body.len() + 32));
        w.i16(api_key).i16(version).i32(self.correlation).string(&self.client_id.clone());
        w.0.extend_from_slice(&body);
        let mut frame = (w.0.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&w.0);
        self.stream.write_all(&frame).await.map_err(|e| format!("Kafka request: {e}"))?;
        let len = self.stream.read_i32().await.map_err(|e| format!("Kafka response: {e}"))?;
        if !(4..=(64 << 20)).contains(&len) {
            return Err(format!("Kafka response of {len} bytes"));
        }
        let mut buf = vec![0; len as usize];
        self.stream.read_exact(&mut buf).await.map_err(|e| format!("Kafka response: {e}"))?;
        let correlation = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
        if correlation != self.correlation {
            return Err(format!("Kafka answered request {correlation}, expected {}", self.correlation));
        }
        buf.drain(..4);
        Ok(buf)
    }

    /// The committed offsets of `partitions` of `topic` (absent: none committed).
    pub async fn fetch(&mut self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, String> {
        let mut w = Writer(Vec::new());
        w.string(&self.group.clone()).i32(1).string(topic).i32(partitions.len() as i32);
        for p in partitions {
            w.i32(*p);
        }
        let body = self.call(OFFSET_FETCH, 1, w.0).await?;
        let mut r = Reader(&body);
        let mut out = BTreeMap::new();
        for _ in 0..r.count(2)? {
            let _name = r.string()?;
            for _ in 0..r.count(16)? {
                let partition = r.i32()?;
                let offset = r.i64()?;
                let _metadata = r.string()?;
                let code = r.i16()?;
                if code != 0 && code != 3 {
                    return Err(format!("OffsetFetch {topic}/{partition}: {}", error_name(code)));
                }
                if offset >= 0 {
                    out.insert(partition, offset);
                }
            }
        }
        Ok(out)
    }

    /// Commits `offsets` (partition → next offset to read) of `topic`.
    pub async fn commit(&mut self, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<(), String> {
        let mut w = Writer(Vec::new());
        w.string(&self.group.clone()).i32(-1).string("").i64(-1).i32(1).string(topic).i32(offsets.len() as i32);
        for (p, o) in offsets {
            w.i32(*p).i64(*o).i16(-1);
        }
        let body = self.call(OFFSET_COMMIT, 2, w.0).await?;
        let mut r = Reader(&body);
        for _ in 0..r.count(2)? {
            let _name = r.string()?;
            for _ in 0..r.count(6)? {
                let partition = r.i32()?;
                let code = r.i16()?;
                if code != 0 {
                    return Err(format!("OffsetCommit {topic}/{partition}: {}", error_name(code)));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_with_bounds() {
        // OffsetFetch v1: one topic, one partition at offset 42.
        let mut w = Writer(Vec::new());
        w.i32(1).string("otlp_logs").i32(1).i32(0).i64(42).i16(-1).i16(0);
        let mut r = Reader(&w.0);
        assert_eq!(r.count(2).unwrap(), 1);
        assert_eq!(r.string().unwrap(), "otlp_logs");
        assert_eq!(r.count(16).unwrap(), 1);
        assert_eq!((r.i32().unwrap(), r.i64().unwrap()), (0, 42));
        assert_eq!(r.string().unwrap(), "", "a null string");
        let mut forged = Writer(Vec::new());
        forged.i32(i32::MAX);
        assert!(Reader(&forged.0).count(16).is_err(), "an array longer than the response is refused");
    }
}
