//! The command line and configuration checking, as a user meets them: `validate`, `components`,
//! `--version`, the embedded default, and the exact messages (file, line:column, key path) and
//! exit status 2 of invalid configurations.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn switchyard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(args).output().expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Validates `yaml` written to a file named `bad.yaml`; returns exit code and stderr.
fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (code, _, err) = switchyard(&["validate", "--config", path.to_str().unwrap()]);
    (code, err.replace(&dir.path().display().to_string(), "DIR"))
}

const GOOD_HEAD: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\n";

#[test]
fn every_example_configuration_validates() {
    let mut seen = 0;
    let dirs = [repo().join("config"), repo().join("deploy")];
    for entry in dirs.iter().flat_map(|d| std::fs::read_dir(d).unwrap()) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, out, err) = switchyard(&["validate", "--config", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {err}", path.display());
            assert!(out.contains("configuration is valid"), "{out}");
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected example configurations in config/ and deploy/");
}

#[test]
fn validate_without_config_checks_the_embedded_default() {
    let (code, out, _) = switchyard(&["validate"]);
    assert_eq!(code, 0);
    for p in ["traces", "metrics", "logs"] {
        assert!(out.contains(&format!("  {p}: receivers [otlp] -> processors [batch] -> exporters [debug]")), "{out}");
    }
}

#[test]
fn components_lists_every_type_with_signals() {
    let (code, out, _) = switchyard(&["components"]);
    assert_eq!(code, 0);
    for (section, name) in [
        ("receivers", "otlp"),
        ("processors", "batch"),
        ("exporters", "debug"),
        ("exporters", "file"),
        ("extensions", "health_check"),
    ] {
        assert!(out.contains(&format!("{section}:")), "{out}");
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        if section != "extensions" {
            assert!(line.contains("traces, metrics, logs"), "{line}");
        }
    }
    // Connectors list the signal pairs they join; the descriptions still line up.
    assert!(out.contains("connectors:"), "{out}");
    let count = out.lines().find(|l| l.trim_start().starts_with("count ")).unwrap_or_default();
    assert!(count.contains("traces->metrics, metrics->metrics, logs->metrics"), "{count}");
    let column = |name: &str| {
        let line = out.lines().find(|l| l.trim_start().starts_with(&format!("{name} "))).unwrap_or_default();
        line.find(" counts ").or_else(|| line.find(" OTLP over")).unwrap_or(0)
    };
    assert_eq!(column("count"), column("otlp"), "descriptions start in one column:\n{out}");
}

#[test]
fn version_is_printed() {
    let (code, out, _) = switchyard(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("switchyard {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_key_is_reported_with_position_and_suggestion() {
    let (code, err) = validate(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpiont: localhost:1\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n",
    );
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "switchyard: invalid configuration: DIR/bad.yaml:5:9: receivers.otlp.protocols.grpc.endpiont: unknown key \"endpiont\"; did you mean \"endpoint\"? (expected one of: endpoint, max_recv_msg_size_mib, max_concurrent_streams, read_buffer_size, write_buffer_size, max_connections, keepalive, tls, auth, include_metadata)"
    );
}

#[test]
fn pipeline_naming_a_missing_exporter() {
    let (code, err) = validate(&format!(
        "{GOOD_HEAD}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug, otlp/vendor]\n"
    ));
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "switchyard: invalid configuration: DIR/bad.yaml:11:26: service.pipelines.traces.exporters: exporter \"otlp/vendor\" is not defined in \"exporters\" (defined: debug)"
    );
}

#[test]
fn unknown_component_type_lists_the_known_ones() {
    let (code, err) = validate("receivers:\n  otlpp:\nservice:\n  pipelines: {}\n");
    assert_eq!(code, 2);
    let err = err.trim();
    assert!(
        err.starts_with(
            "switchyard: invalid configuration: DIR/bad.yaml:2:3: receivers.otlpp: unknown receiver type \"otlpp\"; did you mean \"otlp\"? (known receiver types: otlp, "
        ),
        "{err}"
    );
    // Every receiver type is listed.
    for t in switchyard::components::ALL.iter().filter(|t| t.kind == switchyard::config::ComponentKind::Receiver) {
        assert!(err.contains(t.name), "{} missing from: {err}", t.name);
    }
}

#[test]
fn invalid_address_and_missing_field_and_wrong_type() {
    let (code, err) = validate(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: localhost\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "bad.yaml:5:19: receivers.otlp.protocols.http.endpoint: invalid address \"localhost\": expected host:port"
        ),
        "{err}"
    );
    let (code, err) = validate(&format!(
        "{GOOD_HEAD}  file:\n    rotation: {{max_megabytes: 5}}\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [file]\n"
    ));
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:8:5: exporters.file: missing required key \"path\""), "{err}");
    let (code, err) = validate(&format!(
        "{GOOD_HEAD}processors:\n  batch:\n    send_batch_size: lots\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n"
    ));
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "bad.yaml:9:22: processors.batch.send_batch_size: expected a non-negative integer, found \"lots\""
        ),
        "{err}"
    );
}

#[test]
fn missing_receivers_and_unknown_signal_and_unknown_top_level_key() {
    let (code, err) = validate(&format!("{GOOD_HEAD}service:\n  pipelines:\n    traces:\n      exporters: [debug]\n"));
    assert_eq!(code, 2);
    assert!(err.contains("service.pipelines.traces.receivers: a pipeline needs at least one receiver"), "{err}");
    let (code, err) = validate(&format!(
        "{GOOD_HEAD}service:\n  pipelines:\n    spans:\n      receivers: [otlp]\n      exporters: [debug]\n"
    ));
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:9:5: service.pipelines.spans: unknown signal \"spans\""), "{err}");
    let (code, err) = validate(&format!("{GOOD_HEAD}servce:\n  pipelines: {{}}\n"));
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:7:1: servce: unknown key \"servce\"; did you mean \"service\"?"), "{err}");
}

#[test]
fn several_config_files_merge_and_variables_expand() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.yaml");
    let over = dir.path().join("over.yaml");
    std::fs::write(&base, format!("{GOOD_HEAD}processors:\n  batch:\n    timeout: 1s\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n")).unwrap();
    std::fs::write(&over, "service:\n  pipelines:\n    traces:\n      processors: [batch]\n    logs/extra:\n      receivers: [otlp]\n      exporters:\n        - ${env:SY_TEST_EXPORTER:-debug}\n").unwrap();
    let (code, out, err) =
        switchyard(&["validate", "--config", base.to_str().unwrap(), "--config", over.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("traces: receivers [otlp] -> processors [batch] -> exporters [debug]"), "{out}");
    assert!(out.contains("logs/extra: receivers [otlp] -> processors [(none)] -> exporters [debug]"), "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "--config", base.to_str().unwrap(), "--config", over.to_str().unwrap()])
        .env("SY_TEST_EXPORTER", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exporter \"nope\" is not defined"));
}

#[test]
fn runs_the_embedded_default_without_arguments() {
    // The default listens on the fixed ports 4317, 4318 and 8888; no other test uses them.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let child =
        Command::new(env!("CARGO_BIN_EXE_switchyard")).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    // Killed if an assertion fails before the test stops it.
    let mut child = KillOnDrop(child);
    let ready = eventually(Duration::from_secs(15), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("switchyard is running")
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ready, "default did not come up: {text}");
    let fixture = std::fs::read(repo().join("tests/fixtures/python-sdk-traces.pb")).unwrap();
    let r = http_request("POST", 4318, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &fixture).unwrap();
    assert_eq!(r.status, 200);
    signal(child.0.id(), "TERM");
    let status = child.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert!(text.contains("using the embedded default configuration"), "{text}");
    assert!(text.contains("127.0.0.1:4317") && text.contains("127.0.0.1:4318"), "{text}");
    assert!(text.contains("py-span-http") || text.contains("items=1"), "debug exporter output missing: {text}");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn collector_style_settings_are_accepted() {
    let (code, err) = validate(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: :4317\nexporters:\n  debug:\n    verbosity: normal\n    sampling_initial: 5\n    sampling_thereafter: 200\n    use_internal_logger: false\n  file:\n    path: /tmp/x.jsonl\n    append: true\n    format: json\n    flush_interval: 2s\n    rotation:\nservice:\n  telemetry:\n    logs:\n      level: INFO\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug, file]\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, err) = validate(&format!(
        "{GOOD_HEAD}  file:\n    path: x\n    format: proto\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [file]\n"
    ));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.yaml:9:13: exporters.file.format: unknown value \"proto\" (expected one of: json)"),
        "{err}"
    );
}

#[test]
fn jaeger_and_zipkin_settings_are_checked_with_their_key_paths() {
    let tail = "exporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [jaeger]\n      exporters: [debug]\n";
    let (code, err) = validate(&format!(
        "receivers:\n  jaeger:\n    protocols:\n      thrift_compact:\n        max_packet_size: 70000\n{tail}"
    ));
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "switchyard: invalid configuration: DIR/bad.yaml:5:26: receivers.jaeger.protocols.thrift_compact.max_packet_size: must be between 1 and 65535 (the largest UDP datagram)"
    );
    let (code, err) =
        validate(&format!("receivers:\n  jaeger:\n    remote_sampling:\n      host_endpoint: :5778\n{tail}"));
    assert_eq!(code, 2);
    assert!(err.contains("receivers.jaeger.remote_sampling: unknown key \"remote_sampling\""), "{err}");
    let (code, err) = validate(&format!("receivers:\n  jaeger:\n    protocols: {{}}\n{tail}"));
    assert_eq!(code, 2);
    assert!(err.contains("enable at least one protocol: grpc, thrift_http, thrift_binary or thrift_compact"), "{err}");
    let (code, err) = validate(
        "receivers:\n  zipkin:\n    endpoint: localhost\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [zipkin]\n      exporters: [debug]\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("receivers.zipkin.endpoint: invalid address \"localhost\""), "{err}");
}

#[test]
fn a_kafka_receiver_with_one_topic_in_two_signals_pipelines_refuses_to_start() {
    // Started, not just validated: the check needs the pipelines the receiver is in. Nothing
    // is contacted (the broker address is never reached before the refusal).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kafka.yaml");
    std::fs::write(
        &path,
        "receivers:\n  kafka:\n    brokers: [127.0.0.1:9]\n    topic: everything\nexporters:\n  debug:\n\
         service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [kafka]\n      exporters: [debug]\n\
         \x20   logs:\n      receivers: [kafka]\n      exporters: [debug]\n",
    )
    .unwrap();
    let (code, _, err) = switchyard(&["--config", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("can serve one signal") && err.contains("traces and logs"), "{err}");
}

#[test]
fn a_storage_key_must_name_a_listed_file_storage_extension() {
    let exporter =
        "exporters:\n  otlp:\n    endpoint: 127.0.0.1:4317\n    sending_queue:\n      storage: file_storage\n";
    let pipelines = "  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n";
    let receivers = "receivers:\n  otlp:\n    protocols:\n      grpc:\n";
    let (code, err) = validate(&format!(
        "{receivers}{exporter}extensions:\n  file_storage:\n    directory: /tmp\nservice:\n{pipelines}"
    ));
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "switchyard: invalid configuration: DIR/bad.yaml:9:16: exporters.otlp.sending_queue.storage: no extension file_storage is defined and listed in service.extensions"
    );
    let (code, err) = validate(&format!(
        "{receivers}{}extensions:\n  health_check:\nservice:\n  extensions: [health_check]\n{pipelines}",
        exporter.replace("storage: file_storage", "storage: health_check")
    ));
    assert_eq!(code, 2);
    assert!(err.contains("sending_queue.storage: extension health_check is not a file_storage extension"), "{err}");
}

#[test]
fn an_unset_variable_is_a_warning_naming_the_key_and_an_error_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vendor.yaml");
    std::fs::write(
        &path,
        "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  otlphttp/vendor:\n    endpoint: https://user:pw@otlp.vendor.example\n    headers:\n      api-key: ${env:SWITCHYARD_TEST_SURELY_UNSET_KEY}\n      region: ${env:SWITCHYARD_TEST_SURELY_UNSET_REGION:-eu}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [otlphttp/vendor]}\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let (code, out, err) = switchyard(&["validate", "--config", file]);
    assert_eq!(code, 0, "a warning, not an error: {err}");
    let warning = format!(
        "warning: {file}:9:16: exporters.otlphttp/vendor.headers.api-key: ${{env:SWITCHYARD_TEST_SURELY_UNSET_KEY}} is not set and has no default"
    );
    assert!(err.contains(&warning), "{err}");
    assert!(!err.contains("REGION"), "a variable with a default is fine: {err}");
    assert!(
        out.contains("otlphttp/vendor: https://xxxxx@otlp.vendor.example/v1/traces"),
        "where it sends, redacted:\n{out}"
    );
    let (code, _, err) = switchyard(&["validate", "--strict", "--config", file]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--strict"), "{err}");
}
