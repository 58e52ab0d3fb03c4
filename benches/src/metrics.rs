//! The server's side of a measurement, from Triton's Prometheus metrics at `GET /metrics`.
//!
//! The generator scrapes once when a measurement window opens and once when it closes; the
//! difference of the model's counters (summed over its versions) gives the average batch size
//! the server formed and where a request's time went (queue or compute).

use serde::Serialize;

/// One sample of the Prometheus text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Labels in the order written, values unescaped.
    pub labels: Vec<(&'a str, String)>,
    /// Value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses one line of the text format: `name{label="value",...} value [timestamp]`. Comments,
/// blank lines and malformed lines give `None`.
pub fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim();
            rest = rest[eq + 1..].trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other), // \\ and \"
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key, value));
            rest = &rest[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// Cumulative counters of one model, summed over its versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModelCounters {
    /// `nv_inference_request_success`: successful requests.
    pub request_success: f64,
    /// `nv_inference_count`: inferences (a request of batch n counts n).
    pub inference_count: f64,
    /// `nv_inference_exec_count`: model executions (a batch counts once).
    pub exec_count: f64,
    /// `nv_inference_queue_duration_us`: cumulative queueing time.
    pub queue_us: f64,
    /// `nv_inference_compute_infer_duration_us`: cumulative model execution time.
    pub compute_infer_us: f64,
}

impl ModelCounters {
    /// The model's counters in a `/metrics` body, or `None` when no sample carries
    /// `model="<model>"` (the endpoint is not Triton's, or the model is unknown to it).
    pub fn from_text(text: &str, model: &str) -> Option<ModelCounters> {
        let mut counters = ModelCounters::default();
        let mut seen = false;
        for sample in text.lines().filter_map(parse_sample) {
            if !sample.name.starts_with("nv_inference_") || sample.label("model") != Some(model) {
                continue;
            }
            let field = match sample.name {
                "nv_inference_request_success" => &mut counters.request_success,
                "nv_inference_count" => &mut counters.inference_count,
                "nv_inference_exec_count" => &mut counters.exec_count,
                "nv_inference_queue_duration_us" => &mut counters.queue_us,
                "nv_inference_compute_infer_duration_us" => &mut counters.compute_infer_us,
                _ => {
                    seen = true;
                    continue;
                }
            };
            *field += sample.value;
            seen = true;
        }
        seen.then_some(counters)
    }

    /// What accumulated between `before` and `self`.
    pub fn since(&self, before: &ModelCounters) -> ModelCounters {
        ModelCounters {
            request_success: self.request_success - before.request_success,
            inference_count: self.inference_count - before.inference_count,
            exec_count: self.exec_count - before.exec_count,
            queue_us: self.queue_us - before.queue_us,
            compute_infer_us: self.compute_infer_us - before.compute_infer_us,
        }
    }
}

/// The server's view of one measurement window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerStats {
    /// Counter increases over the window.
    pub delta: ModelCounters,
    /// Inferences per execution (`nv_inference_count` / `nv_inference_exec_count`).
    pub avg_batch_size: Option<f64>,
    /// Queueing µs per successful request.
    pub queue_us_per_request: Option<f64>,
    /// Model execution µs per successful request.
    pub compute_infer_us_per_request: Option<f64>,
}

impl ServerStats {
    /// Derives the per-request figures from a window's counter increases. Requests are the
    /// server's own count of successes in the window, or `client_successes` when the server
    /// reports none (its counters and the client's count cover nearly the same requests).
    pub fn from_delta(delta: ModelCounters, client_successes: u64) -> ServerStats {
        let requests = if delta.request_success > 0.0 { delta.request_success } else { client_successes as f64 };
        let per = |x: f64, n: f64| (n > 0.0).then(|| x / n);
        ServerStats {
            delta,
            avg_batch_size: per(delta.inference_count, delta.exec_count),
            queue_us_per_request: per(delta.queue_us, requests),
            compute_infer_us_per_request: per(delta.compute_infer_us, requests),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_escapes() {
        let s = parse_sample(r#"nv_inference_count{model="mlp",version="2"} 42"#).unwrap();
        assert_eq!(s.name, "nv_inference_count");
        assert_eq!(s.label("model"), Some("mlp"));
        assert_eq!(s.label("version"), Some("2"));
        assert_eq!(s.value, 42.0);

        let s = parse_sample(r#"m{ a = "x\"y,}" , b="back\\slash\nline", } 1.5e3 1700000000000"#).unwrap();
        assert_eq!(s.labels, vec![("a", "x\"y,}".to_string()), ("b", "back\\slash\nline".to_string())]);
        assert_eq!(s.value, 1500.0);

        assert_eq!(parse_sample("up 1").unwrap().labels, vec![]);
        assert_eq!(parse_sample("up{} +Inf").unwrap().value, f64::INFINITY);
        assert!(parse_sample("nan NaN").unwrap().value.is_nan());
        for bad in ["", "# HELP up x", "# TYPE up counter", "up", r#"up{a="1} 2"#, "up{a=1} 2", "up x"] {
            assert_eq!(parse_sample(bad), None, "{bad:?}");
        }
    }

    const TEXT: &str = r#"
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="mlp",version="1"} 10
nv_inference_count{model="mlp",version="2"} 30
nv_inference_count{model="mlp_big",version="1"} 1000
nv_inference_exec_count{model="mlp",version="1"} 5
nv_inference_exec_count{model="mlp",version="2"} 5
nv_inference_request_success{model="mlp",version="1"} 40
nv_inference_request_failure{model="mlp",reason="BACKEND",version="1"} 3
nv_inference_queue_duration_us{model="mlp",version="2"} 800
nv_inference_compute_infer_duration_us{model="mlp",version="2"} 4000
nv_inference_compute_infer_duration_us{version="2",model="mlp"} 4000
"#;

    #[test]
    fn sums_a_model_over_its_versions() {
        let c = ModelCounters::from_text(TEXT, "mlp").unwrap();
        assert_eq!(
            c,
            ModelCounters { request_success: 40.0, inference_count: 40.0, exec_count: 10.0, queue_us: 800.0, compute_infer_us: 8000.0 }
        );
        assert_eq!(ModelCounters::from_text(TEXT, "mlp_big").unwrap().inference_count, 1000.0);
        assert_eq!(ModelCounters::from_text(TEXT, "other"), None);
        assert_eq!(ModelCounters::from_text("<html>not found</html>", "mlp"), None);
    }

    #[test]
    fn window_figures_come_from_deltas() {
        let before = ModelCounters::from_text(TEXT, "mlp").unwrap();
        let after = ModelCounters {
            request_success: 140.0,
            inference_count: 140.0,
            exec_count: 35.0,
            queue_us: 20_800.0,
            compute_infer_us: 108_000.0,
        };
        let stats = ServerStats::from_delta(after.since(&before), 99);
        assert_eq!(stats.delta.inference_count, 100.0);
        assert_eq!(stats.avg_batch_size, Some(4.0));
        assert_eq!(stats.queue_us_per_request, Some(200.0));
        assert_eq!(stats.compute_infer_us_per_request, Some(1000.0));

        // No executions and no server-side successes: falls back to the client's count.
        let idle = ServerStats::from_delta(ModelCounters { queue_us: 50.0, ..Default::default() }, 10);
        assert_eq!(idle.avg_batch_size, None);
        assert_eq!(idle.queue_us_per_request, Some(5.0));
        assert_eq!(ServerStats::from_delta(ModelCounters::default(), 0).queue_us_per_request, None);
    }
}
