//! `quiver apply` and `quiver delete`.

use std::collections::HashMap;
use std::io::Write;

use http::{Method, StatusCode};
use serde_json::Value;

use super::client::{segment, Client};
use super::{docs, ApplyArgs, CliError, ConnectionArgs, DeleteArgs, ResourceType, DEFAULT_NAMESPACE};

/// Maps a document's (apiVersion, kind) to its resource through the server's discovery
/// documents, so any kind the server serves can be applied.
struct Discovery<'a> {
    client: &'a Client,
    cache: HashMap<String, Value>,
}

impl Discovery<'_> {
    async fn resource(&mut self, api_version: &str, kind: &str) -> Result<ResourceType, CliError> {
        let Some((group, version)) = api_version.split_once('/') else {
            return Err(CliError::Input(format!("apiVersion {api_version:?}: expected group/version (core kinds are not served here)")));
        };
        if !self.cache.contains_key(api_version) {
            let path = format!("/apis/{}/{}", segment(group)?, segment(version)?);
            let reply = self.client.get(&path).await?;
            let doc = if reply.status == StatusCode::NOT_FOUND { Value::Null } else { reply.ok()? };
            self.cache.insert(api_version.to_string(), doc);
        }
        let found = self.cache[api_version]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["kind"] == kind && r["name"].as_str().is_some_and(|n| !n.contains('/'))));
        match found {
            Some(r) => Ok(ResourceType {
                group: group.into(),
                version: version.into(),
                plural: r["name"].as_str().unwrap_or_default().into(),
                kind: kind.into(),
                namespaced: r["namespaced"].as_bool().unwrap_or(true),
            }),
            None => Err(CliError::Input(format!("no matches for kind \"{kind}\" in version \"{api_version}\""))),
        }
    }
}

/// The resource, namespace and name a document addresses, with metadata.namespace filled in.
async fn target(discovery: &mut Discovery<'_>, doc: &mut Value, flag_ns: Option<&str>) -> Result<(ResourceType, String, String), CliError> {
    let api_version = doc["apiVersion"].as_str().ok_or_else(|| CliError::Input("apiVersion: required".into()))?.to_string();
    let kind = doc["kind"].as_str().ok_or_else(|| CliError::Input("kind: required".into()))?.to_string();
    let resource = discovery.resource(&api_version, &kind).await?;
    let name = doc["metadata"]["name"].as_str().ok_or_else(|| CliError::Input("metadata.name: required".into()))?.to_string();
    segment(&name)?;
    let doc_ns = doc["metadata"]["namespace"].as_str().map(str::to_string);
    let ns = match (doc_ns, flag_ns) {
        (Some(d), Some(f)) if d != f => {
            return Err(CliError::Input(format!(
                "the namespace from the provided object \"{d}\" does not match the namespace \"{f}\". You must pass '--namespace={d}' to perform this operation."
            )))
        }
        (Some(d), _) => d,
        (None, Some(f)) => f.to_string(),
        (None, None) => DEFAULT_NAMESPACE.to_string(),
    };
    segment(&ns)?;
    if resource.namespaced {
        doc["metadata"]["namespace"] = Value::String(ns.clone());
    }
    Ok((resource, ns, name))
}

async fn apply_one(
    client: &Client,
    discovery: &mut Discovery<'_>,
    mut doc: Value,
    args: &ApplyArgs,
    err: &mut dyn Write,
) -> Result<String, CliError> {
    let (resource, ns, name) = target(discovery, &mut doc, args.namespace.as_deref()).await?;
    let path = resource.item_path(&ns, &name);
    let before = client.get(&path).await?;
    let prior_version = match before.status {
        StatusCode::NOT_FOUND => None,
        _ => Some(before.ok()?["metadata"]["resourceVersion"].clone()),
    };
    let body = serde_json::to_vec(&doc).map_err(|e| CliError::Input(e.to_string()))?;
    // fieldManager/force make the same request work against a real kube-apiserver.
    let reply =
        client.send(Method::PATCH, &format!("{path}?fieldManager=quiver&force=true"), Some("application/apply-patch+yaml"), body).await?;
    for w in &reply.warnings {
        writeln!(err, "Warning: {w}")?;
    }
    let created = reply.status == StatusCode::CREATED;
    let after = reply.ok()?;
    let verb = match prior_version {
        _ if created => "created",
        Some(v) if v == after["metadata"]["resourceVersion"] => "unchanged",
        _ => "configured",
    };
    Ok(format!("{}/{name} {verb}", resource.display()))
}

/// `quiver apply -f ...`: each document is server-side applied; failures are reported and the
/// rest still go (as kubectl), and the result is an error if any failed.
pub async fn run_apply(conn: &ConnectionArgs, args: &ApplyArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let documents = docs::load(&args.filenames)?;
    if documents.is_empty() {
        return Err(CliError::Input("no objects passed to apply".into()));
    }
    let client = Client::new(conn)?;
    let mut discovery = Discovery { client: &client, cache: HashMap::new() };
    let mut failed = 0;
    for (source, doc) in &documents {
        match apply_one(&client, &mut discovery, doc.clone(), args, err).await {
            Ok(line) => writeln!(out, "{line}")?,
            Err(e) => {
                failed += 1;
                report(err, source, &e)?;
            }
        }
    }
    finish(failed, documents.len())
}

fn report(err: &mut dyn Write, source: &str, e: &CliError) -> Result<(), CliError> {
    match e {
        CliError::Api { .. } => writeln!(err, "{e}")?,
        _ => writeln!(err, "error: {source}: {e}")?,
    }
    Ok(())
}

fn finish(failed: usize, total: usize) -> Result<(), CliError> {
    if failed > 0 {
        return Err(CliError::Failed { failed, total });
    }
    Ok(())
}

async fn delete_one(client: &Client, resource: &ResourceType, ns: &str, name: &str) -> Result<String, CliError> {
    client.send(Method::DELETE, &resource.item_path(segment(ns)?, segment(name)?), None, Vec::new()).await?.ok()?;
    Ok(format!("{} \"{name}\" deleted", resource.display()))
}

/// `quiver delete RESOURCE NAME` or `quiver delete -f ...`.
pub async fn run_delete(conn: &ConnectionArgs, args: &DeleteArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    if args.filenames.is_empty() {
        let (Some(resource), Some(name)) = (&args.resource, &args.name) else {
            return Err(CliError::Config("give RESOURCE NAME (e.g. `quiver delete isvc iris`) or -f FILE".into()));
        };
        let resource = ResourceType::parse(resource)?;
        let client = Client::new(conn)?;
        let line = delete_one(&client, &resource, args.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE), name).await?;
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let documents = docs::load(&args.filenames)?;
    let client = Client::new(conn)?;
    let mut discovery = Discovery { client: &client, cache: HashMap::new() };
    let mut failed = 0;
    for (source, doc) in &documents {
        let mut doc = doc.clone();
        let result = match target(&mut discovery, &mut doc, args.namespace.as_deref()).await {
            Ok((resource, ns, name)) => delete_one(&client, &resource, &ns, &name).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(line) => writeln!(out, "{line}")?,
            Err(e) => {
                failed += 1;
                report(err, source, &e)?;
            }
        }
    }
    finish(failed, documents.len())
}
