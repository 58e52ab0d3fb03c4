//! The kubectl-like commands (`quiver apply/get/delete/describe`): clap argument structs the root
//! binary embeds, and `run_*` functions that talk to the management API and write to any
//! `Write`, so they are testable.

mod apply;
mod client;
mod describe;
mod docs;
mod get;
mod table;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

pub use apply::{run_apply, run_delete};
pub use describe::run_describe;
pub use get::run_get;

/// Most bytes read from one input file (or stdin), and from the `server`/`token` files.
pub(crate) const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;
const MAX_SMALL_FILE_BYTES: u64 = 4096;

/// What a command failed on. The message is what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Missing or unusable settings (server, token, arguments).
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or answered garbage.
    #[error("{0}")]
    Http(String),
    /// The server refused the request; `message` is its Status message.
    #[error("Error from server ({reason}): {message}")]
    Api {
        /// The HTTP status code.
        code: u16,
        /// The Status reason, e.g. `NotFound`.
        reason: String,
        /// The Status message.
        message: String,
    },
    /// An input file could not be read or parsed.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Some documents of an apply/delete failed (each was reported as it failed).
    #[error("{failed} of {total} objects failed")]
    Failed {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
}

/// Where the management API is and how to authenticate.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectionArgs {
    /// The management API's URL (default: the `server` file in the Quiver home, written by `quiver up`).
    #[arg(long)]
    pub server: Option<String>,
    /// The bearer token (default: the `token` file in the Quiver home).
    #[arg(long)]
    pub token: Option<String>,
    /// The Quiver home directory (default: $QUIVER_HOME, else ~/.quiver).
    #[arg(long, env = "QUIVER_HOME")]
    pub home: Option<PathBuf>,
}

impl ConnectionArgs {
    /// The home directory: `--home`, `$QUIVER_HOME`, else `~/.quiver`.
    pub fn home_dir(&self) -> Result<PathBuf, CliError> {
        if let Some(home) = &self.home {
            return Ok(home.clone());
        }
        match std::env::var_os("HOME") {
            Some(h) => Ok(PathBuf::from(h).join(".quiver")),
            None => Err(CliError::Config("no Quiver home: pass --home or set QUIVER_HOME (HOME is not set)".into())),
        }
    }

    fn read_home_file(&self, file: &str, flag: &str) -> Result<String, CliError> {
        let path = self.home_dir()?.join(file);
        let read = std::fs::File::open(&path).and_then(|f| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_SMALL_FILE_BYTES), &mut s)?;
            Ok(s)
        });
        match read {
            Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Ok(_) => Err(CliError::Config(format!("{} is empty: pass {flag}", path.display()))),
            Err(e) => {
                Err(CliError::Config(format!("no {flag} given and {} is not readable ({e}); is `quiver up` running?", path.display())))
            }
        }
    }

    /// The server URL: `--server`, else the home's `server` file.
    pub fn server_url(&self) -> Result<String, CliError> {
        match &self.server {
            Some(s) => Ok(s.clone()),
            None => self.read_home_file("server", "--server"),
        }
    }

    /// The token: `--token`, else the home's `token` file.
    pub fn bearer_token(&self) -> Result<String, CliError> {
        match &self.token {
            Some(t) => Ok(t.clone()),
            None => self.read_home_file("token", "--token"),
        }
    }
}

/// `quiver apply`.
#[derive(Args, Debug, Clone, Default)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them (*.yaml, *.yml, *.json) or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
    /// The namespace for objects that name none (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// Output formats of `quiver get`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// The table with replica columns.
    Wide,
    /// The objects as JSON.
    Json,
    /// The objects as YAML.
    Yaml,
    /// `resource/name` per line.
    Name,
}

/// `quiver get`.
#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// The resource type: isvc, inferenceservice or inferenceservices.
    pub resource: String,
    /// One object's name (default: all).
    pub name: Option<String>,
    /// The namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
}

/// `quiver delete`.
#[derive(Args, Debug, Clone, Default)]
pub struct DeleteArgs {
    /// The resource type (with NAME), e.g. isvc.
    pub resource: Option<String>,
    /// The object's name.
    pub name: Option<String>,
    /// Delete the objects a manifest (file, directory or `-`) describes. Repeatable.
    #[arg(short = 'f', long = "filename", conflicts_with_all = ["resource", "name"])]
    pub filenames: Vec<String>,
    /// The namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `quiver describe`.
#[derive(Args, Debug, Clone)]
pub struct DescribeArgs {
    /// The resource type, e.g. isvc.
    pub resource: String,
    /// The object's name.
    pub name: String,
    /// The namespace (default: `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// The namespace commands use when none is given.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// A resource type the commands know by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceType {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) kind: String,
    pub(crate) namespaced: bool,
}

impl ResourceType {
    pub(crate) fn inference_service() -> ResourceType {
        ResourceType {
            group: "serving.kserve.io".into(),
            version: "v1beta1".into(),
            plural: "inferenceservices".into(),
            kind: "InferenceService".into(),
            namespaced: true,
        }
    }

    /// What `get`/`delete`/`describe` accept as RESOURCE.
    pub(crate) fn parse(name: &str) -> Result<ResourceType, CliError> {
        match name.to_ascii_lowercase().as_str() {
            "isvc"
            | "inferenceservice"
            | "inferenceservices"
            | "inferenceservice.serving.kserve.io"
            | "inferenceservices.serving.kserve.io" => Ok(ResourceType::inference_service()),
            _ => Err(CliError::Config(format!(
                "the server doesn't have a resource type \"{name}\" (known: isvc, inferenceservice, inferenceservices)"
            ))),
        }
    }

    /// `inferenceservice.serving.kserve.io`, the prefix kubectl prints.
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.kind.to_lowercase(), self.group)
    }

    pub(crate) fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/apis/{}/{}/namespaces/{ns}/{}", self.group, self.version, self.plural),
            _ => format!("/apis/{}/{}/{}", self.group, self.version, self.plural),
        }
    }

    pub(crate) fn item_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }
}
