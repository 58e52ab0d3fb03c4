//! `quiver get`.

use std::io::Write;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::client::{segment, Client};
use super::{table, CliError, ConnectionArgs, GetArgs, OutputFormat, ResourceType, DEFAULT_NAMESPACE};

/// JSON as kubectl prints it (four-space indent).
pub(crate) fn to_json(v: &Value) -> Result<String, CliError> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    serde::Serialize::serialize(v, &mut ser).map_err(|e| CliError::Input(e.to_string()))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `quiver get RESOURCE [NAME] [-n NS | -A] [-o wide|json|yaml|name]`.
pub async fn run_get(conn: &ConnectionArgs, args: &GetArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let resource = ResourceType::parse(&args.resource)?;
    let ns = args.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    segment(ns)?;
    if args.all_namespaces && args.name.is_some() {
        return Err(CliError::Config("a resource cannot be retrieved by name across all namespaces".into()));
    }
    let client = Client::new(conn)?;
    let (items, single) = match &args.name {
        Some(name) => (vec![client.get(&resource.item_path(ns, segment(name)?)).await?.ok()?], true),
        None => {
            let path = resource.collection_path(if args.all_namespaces { None } else { Some(ns) });
            let list = client.get(&path).await?.ok()?;
            (list["items"].as_array().cloned().unwrap_or_default(), false)
        }
    };
    match args.output {
        Some(OutputFormat::Json) | Some(OutputFormat::Yaml) => {
            let doc = if single {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
            };
            if args.output == Some(OutputFormat::Json) {
                writeln!(out, "{}", to_json(&doc)?)?;
            } else {
                write!(out, "{}", serde_yaml_ng::to_string(&doc).map_err(|e| CliError::Input(e.to_string()))?)?;
            }
        }
        Some(OutputFormat::Name) => {
            for o in &items {
                writeln!(out, "{}/{}", resource.display(), table::cell(&o["metadata"]["name"]))?;
            }
        }
        Some(OutputFormat::Wide) | None => {
            if items.is_empty() {
                if args.all_namespaces {
                    writeln!(err, "No resources found")?;
                } else {
                    writeln!(err, "No resources found in {ns} namespace.")?;
                }
                return Ok(());
            }
            let wide = args.output == Some(OutputFormat::Wide);
            write!(out, "{}", table::isvc_table(&items, wide, args.all_namespaces, SystemTime::now()))?;
        }
    }
    Ok(())
}
