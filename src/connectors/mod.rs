//! Connectors: one module per connector type, named as in configuration. A connector is the
//! exporter of some pipelines and the receiver of others (see `pipeline::connector`).

pub mod count;
pub mod exponential_histogram;
pub mod forward;
pub mod routing;
pub mod servicegraph;
pub mod spanmetrics;

#[cfg(test)]
mod tests {
    use crate::model::{Config, load_sources};

    fn load(yaml: &str) -> Result<Config, String> {
        load_sources(&[("c.yaml".to_string(), yaml.to_string())]).map_err(|e| e.to_string())
    }

    const HEAD: &str = "receivers:\n  otlp:\n    protocols:\n      http:\nexporters:\n  debug:\n  debug/2:\n";

    #[test]
    fn a_connector_joins_the_pipelines_that_list_it() {
        let c = load(&format!(
            "{HEAD}connectors:\n  forward:\nservice:\n  pipelines:\n    traces/out:\n      receivers: [forward]\n      exporters: [debug]\n    traces/in:\n      receivers: [otlp]\n      exporters: [forward, debug/2]\n"
        ))
        .unwrap();
        let id = crate::config::ComponentId::parse("forward").unwrap();
        let down: Vec<String> =
            c.downstream(&id, crate::signal::Signal::Traces).iter().map(|p| p.to_string()).collect();
        assert_eq!(down, ["traces/out"]);
        let p = c.pipelines.iter().find(|(k, _)| k.to_string() == "traces/in").unwrap().1;
        assert_eq!((p.exporters.len(), p.to_connectors.len()), (1, 1));
    }

    #[test]
    fn connector_mistakes_are_named() {
        let pipelines = |body: &str| {
            format!(
                "{HEAD}connectors:\n  forward:\n  routing:\n    default_pipelines: [traces/out]\n    table:\n      - condition: attributes[\"tenant\"] == \"a\"\n        pipelines: [traces/out]\nservice:\n  pipelines:\n{body}"
            )
        };
        let err = |body: &str| load(&pipelines(body)).unwrap_err();
        let only_exporter = err("    traces:\n      receivers: [otlp]\n      exporters: [forward]\n");
        assert!(
            only_exporter.contains("connectors.forward") && only_exporter.contains("the receiver of no pipeline"),
            "{only_exporter}"
        );
        let only_receiver = err("    traces:\n      receivers: [forward]\n      exporters: [debug]\n");
        assert!(only_receiver.contains("the exporter of no pipeline"), "{only_receiver}");
        let wrong_signal = err(
            "    logs:\n      receivers: [otlp]\n      exporters: [forward]\n    traces/out:\n      receivers: [forward]\n      exporters: [debug]\n",
        );
        assert!(wrong_signal.contains("takes logs from pipeline \"logs\" but feeds no pipeline"), "{wrong_signal}");
        let cycle = err(
            "    traces/a:\n      receivers: [otlp, forward]\n      exporters: [routing]\n    traces/out:\n      receivers: [routing]\n      exporters: [forward]\n",
        );
        assert!(
            cycle.contains("connectors make a cycle: traces/a → routing → traces/out → forward → traces/a"),
            "{cycle}"
        );
        let not_downstream = err(
            "    traces:\n      receivers: [otlp]\n      exporters: [routing]\n    traces/other:\n      receivers: [routing]\n      exporters: [debug]\n",
        );
        assert!(
            not_downstream.contains("connectors.routing.table.0.pipelines")
                && not_downstream.contains("\"traces/out\" does not take traces from this connector"),
            "{not_downstream}"
        );
        // Fed logs too, its traces routes lead nowhere for logs: refused, as the collector does.
        let logs_too = err(
            "    traces:\n      receivers: [otlp]\n      exporters: [routing]\n    logs:\n      receivers: [otlp]\n      exporters: [routing]\n    traces/out:\n      receivers: [routing]\n      exporters: [debug]\n    logs/out:\n      receivers: [routing]\n      exporters: [debug]\n",
        );
        assert!(logs_too.contains("does not take logs from this connector"), "{logs_too}");
        let undefined = err("    traces:\n      receivers: [otlp]\n      exporters: [forwrd]\n");
        assert!(undefined.contains("did you mean \"forward\""), "{undefined}");
        let both = load(&format!(
            "{HEAD}connectors:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
        ));
        assert!(both.is_err_and(|e| e.contains("unknown connector type \"debug\"")));
    }

    #[test]
    fn routing_settings_are_checked_with_their_keys() {
        let routing = |table: &str| {
            load(&format!(
                "{HEAD}connectors:\n  routing:\n    table:\n{table}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [routing]\n    traces/out:\n      receivers: [routing]\n      exporters: [debug]\n"
            ))
        };
        assert!(routing("      - statement: route() where resource.attributes[\"tenant\"] == \"a\"\n        pipelines: [traces/out]").is_ok());
        assert!(routing("      - statement: route()\n        pipelines: [traces/out]").is_ok());
        assert!(routing("      - condition: request[\"X-Tenant\"] == \"a\"\n        context: request\n        pipelines: [traces/out]").is_ok());
        let cases = [
            ("      - condition: name == \n        pipelines: [traces/out]", "routing.table.0.condition"),
            ("      - statement: drop() where true\n        pipelines: [traces/out]", "routing.table.0.statement"),
            (
                "      - condition: \"true\"\n        context: trace\n        pipelines: [traces/out]",
                "unknown context \"trace\"",
            ),
            ("      - condition: \"true\"\n        statement: route()\n        pipelines: [traces/out]", "not both"),
            (
                "      - condition: name == \"x\"\n        context: request\n        pipelines: [traces/out]",
                "unknown path name for a request condition",
            ),
            ("      - condition: \"true\"\n        pipelines: []", "routing.table.0.pipelines"),
        ];
        for (table, wanted) in cases {
            let e = routing(table).unwrap_err();
            assert!(e.contains(wanted), "{wanted}: {e}");
        }
    }
}

#[cfg(test)]
mod docs {
    /// Every YAML example of the connectors section of docs/configuration.md loads.
    #[test]
    fn every_connector_example_in_the_docs_loads() {
        let docs = include_str!("../../docs/configuration.md");
        let start = docs.find("\n## connectors\n").expect("the connectors section");
        let section = &docs[start..];
        let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
        let mut examples = 0;
        for block in section.split("```yaml\n").skip(1) {
            let yaml = &block[..block.find("```").expect("a closed block")];
            crate::model::load_sources(&[("docs.yaml".to_string(), yaml.to_string())])
                .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            examples += 1;
        }
        assert!(examples >= 2, "found {examples} examples");
    }
}
