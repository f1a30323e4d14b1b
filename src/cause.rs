//! An error with its causes on one line, so that an export failure says what happened:
//! `client error (Connect): tcp connect error: Connection refused (os error 111)` rather than
//! the outermost `client error (Connect)`. Messages a cause repeats from its parent are left out.

/// `e` and each of its sources, joined with `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_refused_connection_names_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let e = client.get(uri).await.unwrap_err();
        assert_eq!(e.to_string(), "client error (Connect)");
        let full = super::chain(&e);
        assert!(full.starts_with("client error (Connect): ") && full.contains("refused"), "{full}");
    }
}
