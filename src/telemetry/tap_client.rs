//! `switchyard tap`: prints a sample of the items passing a component of a running
//! switchyard, one JSON object per line, like `vector tap`. It reads `/tap` on the
//! self-metrics address (local only); notices (what was skipped) go to stderr.

use bytes::Bytes;
use http_body_util::BodyExt;
use std::io::Write;
use std::time::Duration;

/// What to tap.
pub struct TapArgs {
    /// The self-metrics address, `host:port`.
    pub address: String,
    pub component: String,
    /// `receiver`, `processor` or `exporter`; none: every component with that id.
    pub kind: Option<String>,
    /// Items per second at most.
    pub limit: u32,
    /// Stop after printing this many items.
    pub count: Option<u64>,
}

/// The `/tap` URL for `args`.
pub fn url(args: &TapArgs) -> String {
    let mut url = format!(
        "http://{}/tap?component={}&limit={}",
        args.address,
        crate::percent::encode(&args.component),
        args.limit
    );
    if let Some(kind) = &args.kind {
        url.push_str(&format!("&kind={}", crate::percent::encode(kind)));
    }
    url
}

/// Prints what the tap streams until it ends, `count` items were printed, or stdout closes.
pub async fn run(args: &TapArgs) -> Result<(), String> {
    let address = &args.address;
    let uri: http::Uri = url(args).parse().map_err(|_| format!("invalid address \"{address}\""))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| format!("{address}: no answer within 5 s"))?
        .map_err(|e| format!("cannot reach switchyard at {address}: {}", crate::cause::chain(&e)))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[..text.len().min(2048)]).trim().to_string();
        return Err(format!("{address} answered HTTP {status}: {}", printable(&text)));
    }
    let mut printed = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    let stdout = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            format!(
                "switchyard ended the tap (it stopped, or its self-metrics listener was restarted): {}",
                crate::cause::chain(&e)
            )
        })?;
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            let notice = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("notice").and_then(|n| n.as_str()).map(str::to_string));
            if let Some(notice) = notice {
                eprintln!("switchyard tap: {}", printable(&notice));
                continue;
            }
            let mut out = stdout.lock();
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                return Ok(()); // stdout closed (piped into `head`)
            }
            printed += 1;
            if args.count.is_some_and(|n| printed >= n) {
                return Ok(());
            }
        }
        if pending.len() > 64 << 20 {
            return Err("the tap sent a line over 64 MiB".into());
        }
    }
    Err("switchyard ended the tap (it stopped, or its self-metrics listener was restarted)".into())
}

/// `text` without control characters (it comes from the server and goes to a terminal).
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_escapes_the_component() {
        let args = TapArgs {
            address: "127.0.0.1:8888".into(),
            component: "otlp/jaeger".into(),
            kind: Some("exporter".into()),
            limit: 5,
            count: None,
        };
        assert_eq!(url(&args), "http://127.0.0.1:8888/tap?component=otlp%2Fjaeger&limit=5&kind=exporter");
    }
}
