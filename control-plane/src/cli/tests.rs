//! The commands against a real in-process management API.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;
use crate::api::tests::{spawn_server, Server, ISVC, TOKEN};
use crate::store::tests::{temp_dir, TempDir};
use crate::store::EventType;

fn conn(server: &Server, home: &TempDir) -> ConnectionArgs {
    std::fs::write(home.0.join("server"), format!("http://{}\n", server.addr)).unwrap();
    std::fs::write(home.0.join("token"), format!("{TOKEN}\n")).unwrap();
    ConnectionArgs { server: None, token: None, home: Some(home.0.clone()) }
}

const MANIFEST: &str = "\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    logger: {mode: all}
    model:
      modelFormat: {name: onnx}
      storageUri: /models/iris
---
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: broken
spec: {}
";

async fn apply(c: &ConnectionArgs, file: &std::path::Path) -> (Result<(), CliError>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = ApplyArgs { filenames: vec![file.display().to_string()], namespace: None };
    let r = run_apply(c, &args, &mut out, &mut err).await;
    (r, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[tokio::test]
async fn apply_reports_created_unchanged_configured_and_errors() {
    let s = spawn_server().await;
    let home = temp_dir();
    let c = conn(&s, &home);
    let file = home.0.join("isvc.yaml");
    std::fs::write(&file, MANIFEST).unwrap();

    let (r, out, err) = apply(&c, &file).await;
    assert!(matches!(r, Err(CliError::Failed { failed: 1, total: 2 })), "{r:?}");
    assert_eq!(out, "inferenceservice.serving.kserve.io/iris created\n");
    assert!(err.contains("Warning: spec.predictor.logger: not implemented, ignored"), "{err}");
    assert!(
        err.contains(
            "Error from server (Invalid): inferenceservices.serving.kserve.io \"broken\" is invalid: spec.predictor: Required value"
        ),
        "{err}"
    );

    let one_doc = MANIFEST.split("---").next().unwrap();
    std::fs::write(&file, one_doc).unwrap();
    let (r, out, _) = apply(&c, &file).await;
    assert!(r.is_ok());
    assert_eq!(out, "inferenceservice.serving.kserve.io/iris unchanged\n");

    std::fs::write(&file, one_doc.replace("/models/iris", "/models/iris2")).unwrap();
    let (r, out, _) = apply(&c, &file).await;
    assert!(r.is_ok());
    assert_eq!(out, "inferenceservice.serving.kserve.io/iris configured\n");
    assert_eq!(s.store.get(ISVC, "default", "iris").unwrap()["metadata"]["generation"], 2);

    // A namespace from -n lands in the object; a conflicting one is refused.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = ApplyArgs { filenames: vec![file.display().to_string()], namespace: Some("team".into()) };
    run_apply(&c, &args, &mut out, &mut err).await.unwrap();
    assert!(s.store.get(ISVC, "team", "iris").is_ok());
}

fn seed_status(s: &Server, name: &str) {
    s.store
        .create(
            ISVC,
            serde_json::from_value(crate::api::tests::isvc(name))
                .map(|mut v: serde_json::Value| {
                    v["metadata"]["namespace"] = json!("default");
                    v
                })
                .unwrap(),
        )
        .unwrap();
    let status = json!({
        "url": format!("http://{name}.default.example.com"),
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                       {"type": "PredictorReady", "status": "True"}],
        "components": {"predictor": {
            "latestReadyRevision": format!("{name}-predictor-00002"),
            "previousRolledoutRevision": format!("{name}-predictor-00001"),
            "traffic": [{"revisionName": format!("{name}-predictor-00002"), "percent": 10, "latestRevision": true},
                        {"revisionName": format!("{name}-predictor-00001"), "percent": 90, "latestRevision": false}],
            "replicas": {"desired": 3, "ready": 2}}},
        "modelStatus": {"states": {"activeModelState": "Loaded", "targetModelState": "Loaded"}, "transitionStatus": "UpToDate"},
    });
    s.store.update_status(ISVC, "default", name, status, None).unwrap();
}

#[test]
fn the_table_reads_like_kubectl_get_isvc() {
    let created = SystemTime::now() - Duration::from_secs(200);
    let obj = json!({"metadata": {"name": "iris", "namespace": "default", "creationTimestamp": humantime::format_rfc3339_seconds(created).to_string()},
        "status": {"url": "http://iris", "conditions": [{"type": "Ready", "status": "True"}],
                   "components": {"predictor": {"latestReadyRevision": "iris-2", "previousRolledoutRevision": "iris-1",
                       "traffic": [{"percent": 10, "latestRevision": true}, {"percent": 90, "latestRevision": false}],
                       "replicas": {"desired": 3, "ready": 2}}}}});
    let bare = json!({"metadata": {"name": "new", "namespace": "team", "creationTimestamp": "bad"}});
    let now = created + Duration::from_secs(200);
    assert_eq!(
        table::isvc_table(&[obj.clone(), bare.clone()], false, false, now),
        "NAME   URL           READY   PREV   LATEST   PREVROLLEDOUTREVISION   LATESTREADYREVISION   AGE\n\
         iris   http://iris   True    90     10       iris-1                  iris-2                3m20s\n\
         new                                                                                        <unknown>\n"
    );
    let wide = table::isvc_table(&[obj, bare], true, true, now);
    let lines: Vec<&str> = wide.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE   NAME") && lines[0].ends_with("AGE         DESIRED   READY-REPLICAS"), "{wide}");
    assert!(lines[1].starts_with("default     iris") && lines[1].ends_with("3m20s       3         2"), "{wide}");
}

#[tokio::test]
async fn get_describe_delete() {
    let s = spawn_server().await;
    let home = temp_dir();
    let c = conn(&s, &home);
    seed_status(&s, "iris");
    s.store.record_event(ISVC, "default", "iris", EventType::Normal, "ModelLoaded", "loaded iris-predictor-00002").unwrap();
    s.store.record_event(ISVC, "default", "iris", EventType::Normal, "ModelLoaded", "loaded iris-predictor-00002").unwrap();

    let get = |resource: &str, name: Option<&str>, output: Option<OutputFormat>, all: bool| GetArgs {
        resource: resource.into(),
        name: name.map(str::to_string),
        namespace: None,
        all_namespaces: all,
        output,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run_get(&c, &get("isvc", None, None, false), &mut out, &mut err).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..7], ["iris", "http://iris.default.example.com", "True", "90", "10", "iris-predictor-00001", "iris-predictor-00002"]);

    let mut out = Vec::new();
    run_get(&c, &get("inferenceservices", None, Some(OutputFormat::Name), true), &mut out, &mut err).await.unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "inferenceservice.serving.kserve.io/iris\n");
    let mut out = Vec::new();
    run_get(&c, &get("isvc", Some("iris"), Some(OutputFormat::Json), false), &mut out, &mut err).await.unwrap();
    let obj: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(obj["status"]["components"]["predictor"]["replicas"]["desired"], 3);
    let mut out = Vec::new();
    run_get(&c, &get("isvc", None, Some(OutputFormat::Yaml), false), &mut out, &mut err).await.unwrap();
    let yaml = String::from_utf8(out).unwrap();
    assert!(
        yaml.starts_with("apiVersion: v1\nitems:\n- apiVersion: serving.kserve.io/v1beta1\n") && yaml.contains("\nkind: List\n"),
        "{yaml}"
    );
    let r = run_get(&c, &get("isvc", Some("nope"), None, false), &mut Vec::new(), &mut err).await;
    assert!(matches!(r, Err(CliError::Api { code: 404, .. })), "{r:?}");
    assert!(run_get(&c, &get("pods", None, None, false), &mut Vec::new(), &mut err).await.is_err());
    let mut err = Vec::new();
    let empty = GetArgs { namespace: Some("empty".into()), ..get("isvc", None, None, false) };
    run_get(&c, &empty, &mut Vec::new(), &mut err).await.unwrap();
    assert_eq!(String::from_utf8(err).unwrap(), "No resources found in empty namespace.\n");

    let mut out = Vec::new();
    let args = DescribeArgs { resource: "isvc".into(), name: "iris".into(), namespace: None };
    run_describe(&c, &args, &mut out, &mut Vec::new()).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    for want in [
        "Name:         iris\n",
        "Namespace:    default\n",
        "Labels:       <none>\n",
        "URL:          http://iris.default.example.com\n",
        "      Storage Uri:  /models/x\n",
        "  Type             Status   Reason   Message   LastTransitionTime\n",
        "  Ready            True                        2026-01-01T00:00:00Z\n",
        "    Latest Ready Revision:  iris-predictor-00002\n",
        "    Replicas:  desired 3, ready 2\n",
        "      iris-predictor-00002   10        true\n",
        "    Active Model State:  Loaded\n",
        "  Type     Reason        Age",
        "  Normal   ModelLoaded   ",
        "(x2 over ",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let del = DeleteArgs { resource: Some("isvc".into()), name: Some("iris".into()), ..Default::default() };
    run_delete(&c, &del, &mut out, &mut err).await.unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "inferenceservice.serving.kserve.io \"iris\" deleted\n");
    let r = run_delete(&c, &del, &mut Vec::new(), &mut err).await;
    assert!(matches!(&r, Err(CliError::Api { reason, .. }) if reason == "NotFound"), "{r:?}");
}

#[tokio::test]
async fn delete_from_a_file_and_connection_errors() {
    let s = spawn_server().await;
    let home = temp_dir();
    let c = conn(&s, &home);
    let file = home.0.join("isvc.yaml");
    std::fs::write(&file, MANIFEST.split("---").next().unwrap()).unwrap();
    apply(&c, &file).await.0.unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let del = DeleteArgs { filenames: vec![file.display().to_string()], ..Default::default() };
    run_delete(&c, &del, &mut out, &mut err).await.unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "inferenceservice.serving.kserve.io \"iris\" deleted\n");

    let mut out = Vec::new();
    let no_home = ConnectionArgs { home: Some(home.0.join("missing")), ..Default::default() };
    let r = run_get(
        &no_home,
        &GetArgs { resource: "isvc".into(), name: None, namespace: None, all_namespaces: false, output: None },
        &mut out,
        &mut err,
    )
    .await;
    assert!(matches!(&r, Err(CliError::Config(m)) if m.contains("--server")), "{r:?}");
    let wrong_token = ConnectionArgs { token: Some("nope".into()), ..c.clone() };
    let r = run_get(
        &wrong_token,
        &GetArgs { resource: "isvc".into(), name: None, namespace: None, all_namespaces: false, output: None },
        &mut out,
        &mut err,
    )
    .await;
    assert!(matches!(r, Err(CliError::Api { code: 401, .. })), "{r:?}");
}

/// The argument structs as the root binary embeds them: clap's own consistency checks, and a few
/// command lines.
#[test]
fn the_args_parse_like_kubectl() {
    use clap::{CommandFactory, Parser, Subcommand};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        conn: ConnectionArgs,
        #[command(subcommand)]
        cmd: Cmd,
    }
    #[derive(Subcommand)]
    enum Cmd {
        Apply(ApplyArgs),
        Get(GetArgs),
        Delete(DeleteArgs),
        Describe(DescribeArgs),
    }
    Cli::command().debug_assert();
    let cli = Cli::parse_from(["quiver", "--server", "http://x", "apply", "-f", "a.yaml", "-f", "dir", "-n", "team"]);
    assert_eq!(cli.conn.server.as_deref(), Some("http://x"));
    assert!(matches!(cli.cmd, Cmd::Apply(a) if a.filenames == ["a.yaml", "dir"] && a.namespace.as_deref() == Some("team")));
    let cli = Cli::parse_from(["quiver", "get", "isvc", "-A", "-o", "wide"]);
    assert!(matches!(cli.cmd, Cmd::Get(g) if g.all_namespaces && g.output == Some(OutputFormat::Wide) && g.name.is_none()));
    assert!(matches!(Cli::parse_from(["quiver", "delete", "-f", "x.yaml"]).cmd, Cmd::Delete(d) if d.filenames == ["x.yaml"]));
    assert!(Cli::try_parse_from(["quiver", "delete", "isvc", "iris", "-f", "x.yaml"]).is_err());
    assert!(matches!(Cli::parse_from(["quiver", "describe", "isvc", "iris"]).cmd, Cmd::Describe(d) if d.name == "iris"));
}
