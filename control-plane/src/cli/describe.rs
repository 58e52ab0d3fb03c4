//! `quiver describe`: an InferenceService and its events, laid out like `kubectl describe`.

use std::fmt::Write as _;
use std::io::Write;
use std::time::SystemTime;

use serde_json::Value;

use super::client::{segment, Client};
use super::table::{age, cell, render};
use super::{CliError, ConnectionArgs, DescribeArgs, ResourceType, DEFAULT_NAMESPACE};

fn map_lines(out: &mut String, label: &str, map: &Value) {
    let entries: Vec<(String, String)> = map.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), cell(v))).collect()).unwrap_or_default();
    if entries.is_empty() {
        let _ = writeln!(out, "{label:<13} <none>");
        return;
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        let l = if i == 0 { label } else { "" };
        let _ = writeln!(out, "{l:<13} {k}={v}");
    }
}

/// `camelCase` to `Camel Case`, as kubectl describe titles fields.
fn title(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() {
            out.push(' ');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Nested fields as indented `Title:  value` lines, as kubectl describe prints custom resources.
fn fields(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        let _ = writeln!(out, "{pad}{}:", title(k));
                        fields(out, v, indent + 2);
                    }
                    scalar => {
                        let _ = writeln!(out, "{pad}{}:  {}", title(k), cell(scalar));
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => fields(out, item, indent + 2),
                    scalar => {
                        let _ = writeln!(out, "{pad}{}", cell(scalar));
                    }
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", cell(scalar));
        }
    }
}

fn indent_table(out: &mut String, text: &str, indent: usize) {
    for line in text.lines() {
        let _ = writeln!(out, "{}{line}", " ".repeat(indent));
    }
}

/// The describe text for an object and its Kubernetes-shaped events, ages taken at `now`.
pub(crate) fn render_describe(obj: &Value, events: &[Value], now: SystemTime) -> String {
    let mut out = String::new();
    let meta = &obj["metadata"];
    let _ = writeln!(out, "{:<13} {}", "Name:", cell(&meta["name"]));
    let _ = writeln!(out, "{:<13} {}", "Namespace:", cell(&meta["namespace"]));
    map_lines(&mut out, "Labels:", &meta["labels"]);
    map_lines(&mut out, "Annotations:", &meta["annotations"]);
    let _ = writeln!(out, "{:<13} {}", "API Version:", cell(&obj["apiVersion"]));
    let _ = writeln!(out, "{:<13} {}", "Kind:", cell(&obj["kind"]));
    let _ = writeln!(out, "{:<13} {}", "URL:", cell(&obj["status"]["url"]));
    let _ = writeln!(out, "{:<13} {}", "Generation:", cell(&meta["generation"]));
    let _ = writeln!(out, "Spec:");
    let _ = writeln!(out, "  Predictor:");
    fields(&mut out, &obj["spec"]["predictor"], 4);
    let status = &obj["status"];
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "Conditions:");
    if conditions.is_empty() {
        let _ = writeln!(out, "  <none>");
    } else {
        let rows: Vec<Vec<String>> = conditions
            .iter()
            .map(|c| vec![cell(&c["type"]), cell(&c["status"]), cell(&c["reason"]), cell(&c["message"]), cell(&c["lastTransitionTime"])])
            .collect();
        indent_table(&mut out, &render(&["Type", "Status", "Reason", "Message", "LastTransitionTime"], &rows), 2);
    }
    let _ = writeln!(out, "Components:");
    match status["components"].as_object().filter(|m| !m.is_empty()) {
        None => {
            let _ = writeln!(out, "  <none>");
        }
        Some(components) => {
            for (name, c) in components {
                let _ = writeln!(out, "  {}:", title(name));
                for key in ["latestCreatedRevision", "latestReadyRevision", "latestRolledoutRevision", "previousRolledoutRevision", "url"] {
                    if !c[key].is_null() {
                        let _ = writeln!(out, "    {}:  {}", title(key), cell(&c[key]));
                    }
                }
                if let Some(r) = c["replicas"].as_object() {
                    let _ = writeln!(out, "    Replicas:  desired {}, ready {}", cell(&r["desired"]), cell(&r["ready"]));
                }
                if let Some(traffic) = c["traffic"].as_array().filter(|t| !t.is_empty()) {
                    let _ = writeln!(out, "    Traffic:");
                    let rows: Vec<Vec<String>> = traffic
                        .iter()
                        .map(|t| vec![cell(&t["revisionName"]), cell(&t["percent"]), cell(&t["latestRevision"]), cell(&t["tag"])])
                        .collect();
                    indent_table(&mut out, &render(&["Revision", "Percent", "Latest", "Tag"], &rows), 6);
                }
            }
        }
    }
    let _ = writeln!(out, "Model Status:");
    if status["modelStatus"].is_object() {
        fields(&mut out, &status["modelStatus"], 2);
    } else {
        let _ = writeln!(out, "  <none>");
    }
    if events.is_empty() {
        let _ = writeln!(out, "Events:       <none>");
    } else {
        let _ = writeln!(out, "Events:");
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let last = age(&e["lastTimestamp"], now);
                let count = e["count"].as_u64().unwrap_or(1);
                let when = if count > 1 { format!("{last} (x{count} over {})", age(&e["firstTimestamp"], now)) } else { last };
                vec![cell(&e["type"]), cell(&e["reason"]), when, cell(&e["message"])]
            })
            .collect();
        let mut rows_with_rule = vec![vec!["----".to_string(), "------".into(), "----".into(), "-------".into()]];
        rows_with_rule.extend(rows);
        indent_table(&mut out, &render(&["Type", "Reason", "Age", "Message"], &rows_with_rule), 2);
    }
    out
}

/// `quiver describe RESOURCE NAME [-n NS]`.
pub async fn run_describe(conn: &ConnectionArgs, args: &DescribeArgs, out: &mut dyn Write, _err: &mut dyn Write) -> Result<(), CliError> {
    let resource = ResourceType::parse(&args.resource)?;
    let ns = segment(args.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE))?;
    let name = segment(&args.name)?;
    let client = Client::new(conn)?;
    let obj = client.get(&resource.item_path(ns, name)).await?.ok()?;
    let events_path =
        format!("/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{name},involvedObject.kind%3D{}", resource.kind);
    let events = client.get(&events_path).await?.ok()?;
    let events = events["items"].as_array().cloned().unwrap_or_default();
    write!(out, "{}", render_describe(&obj, &events, SystemTime::now()))?;
    Ok(())
}
