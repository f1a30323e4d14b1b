//! `router`: sends each entry to the `output` of the first route whose `expr` holds (adding
//! the route's `attributes`), else to `default`; with no default such an entry is dropped.

use super::expr::Expr;
use super::{Invalid, Outputs, Record};
use crate::attributes::string;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub default: Option<Outputs>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub expr: String,
    pub output: Outputs,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Config {
    pub fn build(
        &self,
        key: &str,
        resolve: &dyn Fn(&str, String) -> Result<usize, Invalid>,
    ) -> Result<Router, Invalid> {
        if self.routes.is_empty() {
            return Err((format!("{key}.routes"), "list at least one route".into()));
        }
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("{key}.routes.{i}");
            let expr = Expr::parse(&r.expr).map_err(|e| (format!("{at}.expr"), e))?;
            let to = resolve(r.output.single(&format!("{at}.output"))?, format!("{at}.output"))?;
            let attributes = r.attributes.iter().map(|(k, v)| crate::attributes::kv(k, string(v))).collect();
            routes.push(Route { expr, to, attributes });
        }
        let default = match &self.default {
            None => None,
            Some(d) => Some(resolve(d.single(&format!("{key}.default"))?, format!("{key}.default"))?),
        };
        Ok(Router { routes, default })
    }
}

#[derive(Debug)]
struct Route {
    expr: Expr,
    to: usize,
    attributes: Vec<KeyValue>,
}

#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    default: Option<usize>,
}

impl Router {
    /// The operator `rec` goes to next; none: it is dropped.
    pub fn route(&self, rec: &mut Record) -> Option<usize> {
        match self.routes.iter().find(|r| r.expr.test(rec)) {
            Some(r) => {
                for kv in &r.attributes {
                    super::field::put(&mut rec.log.attributes, &kv.key, kv.value.clone().unwrap_or_default());
                }
                Some(r.to)
            }
            None => self.default,
        }
    }

    pub fn targets(&self) -> Vec<usize> {
        self.routes.iter().map(|r| r.to).chain(self.default).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attr, pipeline, run};

    const CONFIG: &str = r#"
- type: router
  routes:
    - expr: body matches "^\\{"
      output: json
      attributes: {format: json}
    - expr: body contains "="
      output: [kv]
- type: json_parser
  id: json
  output: done
- type: key_value_parser
  id: kv
- type: noop
  id: done
"#;

    #[test]
    fn routes_pick_the_next_operator() {
        let p = pipeline(CONFIG).unwrap();
        let out = run(&p, &[r#"{"a":"1"}"#, "a=2", "neither"]);
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(out.records.len(), 2, "no default: the third is dropped");
        assert_eq!((attr(&out.records[0], "a"), attr(&out.records[0], "format")), (Some("1"), Some("json")));
        assert_eq!((attr(&out.records[1], "a"), attr(&out.records[1], "format")), (Some("2"), None));
        let with_default = pipeline(&CONFIG.replace("  routes:", "  default: done\n  routes:")).unwrap();
        assert_eq!(run(&with_default, &["neither"]).records.len(), 1);
    }

    #[test]
    fn bad_routes_are_named() {
        let (k, _) = pipeline(&CONFIG.replace("output: json", "output: nope")).unwrap_err();
        assert_eq!(k, "operators.0.routes.0.output");
        let (k, e) = pipeline(&CONFIG.replace("body contains", "body like")).unwrap_err();
        assert_eq!(k, "operators.0.routes.1.expr", "{e}");
        assert_eq!(pipeline("- type: router").unwrap_err().0, "operators.0.routes");
    }
}
