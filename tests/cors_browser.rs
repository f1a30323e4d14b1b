//! CORS in a real browser: headless Chromium (Debian's `chromium`) loads a page from one origin
//! that sends OTLP/JSON with `fetch` (a JSON body and a tenant header, so the browser sends a
//! preflight first) to switchyard's OTLP/HTTP and Zipkin receivers on another origin. From an
//! allowed origin the spans arrive and the page can read the answer; from another origin the
//! browser itself blocks the request, and nothing arrives.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Serves `page` at `/page.html` on a port of its own (as a web app's origin would).
fn serve_page(page: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let Some(req) = read_request(&mut reader) else { continue };
            let mut conn = conn;
            if req.line.starts_with("GET /page.html") {
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            } else {
                let _ = write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    });
    port
}

/// Loads `url` in headless Chromium and returns the DOM once the page's requests are done.
fn browse(chromium: &Path, url: &str, profile: &Path) -> String {
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=15000", "--dump-dom", url])
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the page wrote in `<pre id="name">`.
fn outcome(dom: &str, name: &str) -> String {
    let start = format!("<pre id=\"{name}\">");
    dom.split_once(&start)
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

#[test]
fn a_page_from_an_allowed_origin_delivers_and_another_is_blocked_by_the_browser() {
    let Some(chromium) = peer(Path::new("/usr/bin/chromium"), "Debian's chromium (headless browser)") else { return };
    let (otlp, zipkin) = (free_port(), free_port());
    let page = format!(
        r#"<!doctype html><html><body><pre id="otlp">pending</pre><pre id="zipkin">pending</pre><script>
const now = Date.now();
const otlp = {{resourceSpans: [{{resource: {{attributes: [{{key: "service.name", value: {{stringValue: "web-app"}}}}]}},
  scopeSpans: [{{spans: [{{traceId: "5b8efff798038103d269b633813fc60c", spanId: "eee19b7ec3c1b174", name: "ORIGIN-otlp",
  kind: 3, startTimeUnixNano: String(now * 1e6), endTimeUnixNano: String((now + 5) * 1e6)}}]}}]}}]}};
const zipkin = [{{traceId: "5b8efff798038103d269b633813fc60d", id: "eee19b7ec3c1b175", name: "ORIGIN-zipkin",
  timestamp: now * 1000, duration: 5000, localEndpoint: {{serviceName: "web-app"}}}}];
function send(id, url, body) {{
  fetch(url, {{method: "POST", headers: {{"Content-Type": "application/json", "X-Tenant": "web"}}, body: JSON.stringify(body)}})
    .then(r => {{ document.getElementById(id).textContent = "status " + r.status; }})
    .catch(e => {{ document.getElementById(id).textContent = "blocked " + e.name; }});
}}
send("otlp", "http://127.0.0.1:{otlp}/v1/traces", otlp);
send("zipkin", "http://127.0.0.1:{zipkin}/api/v2/spans", zipkin);
</script></body></html>"#
    );
    let allowed_port = serve_page(page.replace("ORIGIN", "allowed"));
    let other_port = serve_page(page.replace("ORIGIN", "other"));
    let cors = format!(
        "{{allowed_origins: [\"http://127.0.0.1:{allowed_port}\", \"https://*.example.com\"], allowed_headers: [X-Tenant], max_age: 600}}"
    );
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{otlp}", cors: {cors}}}
  zipkin: {{endpoint: "127.0.0.1:{zipkin}", cors: {cors}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp, zipkin], exporters: [file]}}
"#
    ));
    let profile = tempfile::tempdir().unwrap();

    let dom = browse(&chromium, &format!("http://127.0.0.1:{allowed_port}/page.html"), profile.path());
    assert_eq!(outcome(&dom, "otlp"), "status 200", "{dom}\n{}", gw.log());
    assert_eq!(outcome(&dom, "zipkin"), "status 202", "{dom}");
    let spans = || span_names(&gw.path("out.jsonl"));
    assert!(eventually(Duration::from_secs(10), || spans() == ["allowed-otlp", "allowed-zipkin"]), "{:?}", spans());

    // The same page from another origin (another port is another origin): the browser's
    // preflight gets no CORS approval, so it never sends the data.
    let dom = browse(&chromium, &format!("http://127.0.0.1:{other_port}/page.html"), profile.path());
    assert_eq!(outcome(&dom, "otlp"), "blocked TypeError", "{dom}");
    assert_eq!(outcome(&dom, "zipkin"), "blocked TypeError", "{dom}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(spans(), ["allowed-otlp", "allowed-zipkin"]);

    // What the browser saw, at the wire: the preflight's answer.
    let r = http_request(
        "OPTIONS",
        otlp,
        "/v1/traces",
        &[
            ("Origin", "https://eu.example.com"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,x-tenant"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://eu.example.com"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
}
