//! The Kafka wire format for the requests rskafka does not make: big-endian writers and a
//! bounds-checked reader, error-code names, and one request/response connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Builds a request body.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.i16(s.len() as i16);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads a response; every length is checked against what is left, so a forged length is an
/// error and never an allocation.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated Kafka message".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    pub fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// A string or nullable string (length -1 is null, read as empty).
    pub fn string(&mut self) -> Result<String, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(String::new());
        }
        Ok(String::from_utf8_lossy(self.take(n as usize)?).into_owned())
    }
    /// Bytes or nullable bytes (null read as empty).
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(&[]);
        }
        self.take(n as usize)
    }
    /// An array length, checked against what is left (each element is at least `min` bytes).
    pub fn count(&mut self, min: usize) -> Result<usize, String> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(0);
        }
        if (n as usize).saturating_mul(min) > self.0.len() {
            return Err("Kafka array longer than its message".into());
        }
        Ok(n as usize)
    }
}

pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const MEMBER_ID_REQUIRED: i16 = 79;

/// The protocol's name of an error code (for messages a user can search for).
pub fn error_name(code: i16) -> String {
    match code {
        3 => "UNKNOWN_TOPIC_OR_PARTITION".into(),
        COORDINATOR_LOAD_IN_PROGRESS => "COORDINATOR_LOAD_IN_PROGRESS".into(),
        COORDINATOR_NOT_AVAILABLE => "COORDINATOR_NOT_AVAILABLE".into(),
        NOT_COORDINATOR => "NOT_COORDINATOR".into(),
        ILLEGAL_GENERATION => "ILLEGAL_GENERATION".into(),
        INCONSISTENT_GROUP_PROTOCOL => "INCONSISTENT_GROUP_PROTOCOL".into(),
        24 => "INVALID_GROUP_ID".into(),
        UNKNOWN_MEMBER_ID => "UNKNOWN_MEMBER_ID".into(),
        26 => "INVALID_SESSION_TIMEOUT".into(),
        REBALANCE_IN_PROGRESS => "REBALANCE_IN_PROGRESS".into(),
        30 => "GROUP_AUTHORIZATION_FAILED".into(),
        35 => "UNSUPPORTED_VERSION".into(),
        MEMBER_ID_REQUIRED => "MEMBER_ID_REQUIRED".into(),
        other => format!("error code {other}"),
    }
}

/// One broker connection carrying one request at a time.
pub struct Connection {
    stream: TcpStream,
    client_id: String,
    correlation: i32,
}

impl Connection {
    pub async fn open(address: &str, client_id: &str) -> Result<Connection, String> {
        let connect = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(address));
        let stream = connect
            .await
            .map_err(|_| format!("{address}: no connection within 10 s"))?
            .map_err(|e| format!("{address}: {e}"))?;
        Ok(Connection { stream, client_id: client_id.into(), correlation: 0 })
    }

    /// Sends one request (header v1) and returns the response body after its correlation id,
    /// giving up after 30 s (a silent broker must not stall heartbeats and commits for ever;
    /// after a failure the connection is not to be used again).
    pub async fn call(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<Vec<u8>, String> {
        self.call_within(api_key, version, body, std::time::Duration::from_secs(30)).await
    }

    /// As `call`, waiting up to `wait` for the answer (JoinGroup may be held for a rebalance).
    pub async fn call_within(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
        wait: std::time::Duration,
    ) -> Result<Vec<u8>, String> {
        tokio::time::timeout(wait, self.exchange(api_key, version, body))
            .await
            .unwrap_or_else(|_| Err(format!("Kafka broker did not answer within {wait:?}")))
    }

    async fn exchange(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<Vec<u8>, String> {
        self.correlation = self.correlation.wrapping_add(1);
        let mut w = Writer(Vec::with_capacity(body.len() + 32));
        w.i32(0).i16(api_key).i16(version).i32(self.correlation).string(&self.client_id);
        w.0.extend_from_slice(body);
        let len = (w.0.len() - 4) as i32;
        w.0[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&w.0).await.map_err(|e| format!("Kafka request: {e}"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_against_the_message() {
        let mut w = Writer::default();
        w.i32(1).string("otlp_logs").bytes(b"abc").i16(-1);
        let mut r = Reader(&w.0);
        assert_eq!(r.count(2).unwrap(), 1);
        assert_eq!(r.string().unwrap(), "otlp_logs");
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.string().unwrap(), "", "a null string");
        let mut forged = Writer::default();
        forged.i32(i32::MAX);
        assert!(Reader(&forged.0).count(16).is_err(), "an array longer than the message is refused");
        assert!(Reader(&forged.0).bytes().is_err(), "bytes longer than the message are refused");
    }
}
