//! A small blocking HTTP/1.0 client for cloud metadata servers (plain HTTP on a link-local or
//! loopback address): one request, a deadline for all of it, a bounded answer.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most of an answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// An answer: its status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends `method` to `url` (`http://host[:port]/path`) with `headers`, all within `timeout`.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// metadata endpoints"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let left = |deadline: Instant| {
        deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()).ok_or_else(|| "timed out".to_string())
    };
    let address = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, left(deadline)?)
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    stream.set_write_timeout(Some(left(deadline)?)).map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).map_err(|e| format!("cannot send to {authority}: {e}"))?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_ANSWER);
    let mut buf = [0u8; 8192];
    loop {
        limited.get_mut().set_read_timeout(Some(left(deadline)?)).map_err(|e| e.to_string())?;
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the answer of {authority}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{authority}: an answer without headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{authority}: no status in the answer"))?;
    Ok(Answer { status, body: body.to_string() })
}

/// `request`, for a 200 answer's body.
pub fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<String, String> {
    let answer = request("GET", url, headers, timeout)?;
    if answer.status != 200 {
        return Err(format!("GET {url}: status {}", answer.status));
    }
    Ok(answer.body)
}
