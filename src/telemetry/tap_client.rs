//! `switchyard tap`: prints a sample of the items passing a component of a running
//! switchyard, one JSON object per line, like `vector tap`. It reads `/tap` on the
//! self-metrics address (local only); notices (what was skipped) go to stderr.

use http_body_util::BodyExt;
use std::io::Write;

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

/// The `/tap` path and query for `args`.
pub fn url(args: &TapArgs) -> String {
    let mut url = format!("/tap?component={}&limit={}", crate::percent::encode(&args.component), args.limit);
    if let Some(kind) = &args.kind {
        url.push_str(&format!("&kind={}", crate::percent::encode(kind)));
    }
    url
}

/// Prints what the tap streams until it ends, `count` items were printed, or stdout closes.
pub async fn run(args: &TapArgs) -> Result<(), String> {
    let path = url(args);
    let mut body = super::local_client::get(&args.address, &path).await?.into_body();
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
            // Only JSON objects are printed, with anything that could drive a terminal escaped.
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if let Some(notice) = value.get("notice").and_then(|n| n.as_str()) {
                eprintln!("switchyard tap: {}", super::local_client::printable(notice));
                continue;
            }
            if value.get("heartbeat").is_some() || !value.is_object() {
                continue;
            }
            let mut out = stdout.lock();
            if writeln!(out, "{}", super::local_client::printable(&line)).and_then(|_| out.flush()).is_err() {
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
        assert_eq!(url(&args), "/tap?component=otlp%2Fjaeger&limit=5&kind=exporter");
    }
}
