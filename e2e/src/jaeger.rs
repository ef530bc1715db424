//! A real Jaeger v2 (built by `make tools` from `e2e/tools/jaeger`) on loopback: OTLP in,
//! spans kept in memory, the query API out.

use std::path::Path;

use crate::process::Process;
use crate::{free_port, tool};

/// A Jaeger with in-memory storage, every listener on 127.0.0.1.
#[derive(Debug)]
pub struct Jaeger {
    process: Process,
    /// `http://127.0.0.1:<port>` of its OTLP/gRPC receiver, as a gateway's
    /// `tracesOtlpEndpoint` names a plaintext in-cluster Jaeger.
    pub otlp_grpc: String,
    /// `http://127.0.0.1:<port>` of its query API (`/api/traces`, `/api/services`).
    pub query: String,
}

impl Jaeger {
    /// Starts Jaeger in `dir/jaeger`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("jaeger");
        std::fs::create_dir_all(&dir)?;
        let (grpc, http, query, query_grpc) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        // Without a configuration Jaeger serves its query API on every interface.
        let config = format!(
            "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}}
  telemetry: {{metrics: {{level: none}}}}
extensions:
  jaeger_storage: {{backends: {{mem: {{memory: {{max_traces: 100000}}}}}}}}
  jaeger_query:
    storage: {{traces: mem}}
    http: {{endpoint: 127.0.0.1:{query}}}
    grpc: {{endpoint: 127.0.0.1:{query_grpc}}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  batch: {{}}
exporters:
  jaeger_storage_exporter: {{trace_storage: mem}}
"
        );
        let file = dir.join("jaeger.yaml");
        std::fs::write(&file, config)?;
        let mut process = Process::start(
            "jaeger",
            &tool("jaeger")?,
            &[format!("--config={}", file.display())],
            &dir,
            &[],
        )?;
        let query = format!("http://127.0.0.1:{query}");
        crate::wait_ready(&mut process, "jaeger", &format!("{query}/api/services")).await?;
        Ok(Self {
            process,
            otlp_grpc: format!("http://127.0.0.1:{grpc}"),
            query,
        })
    }

    /// The traces of `service` (`GET /api/traces`), up to 1000, of any time until now
    /// (the query looks back an hour unless told; the tests' spans are older).
    pub async fn traces(&self, service: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let url = format!(
            "{}/api/traces?service={service}&limit=1000&start=1&end={now}",
            self.query
        );
        let answer = crate::get_json(&url).await?;
        Ok(answer["data"].as_array().cloned().unwrap_or_default())
    }

    /// The log so far.
    pub fn log_tail(&self) -> String {
        self.process.tail(40)
    }
}
