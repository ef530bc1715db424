//! Pure generators: inventory + spec -> the objects and files Vigil applies or writes.
//!
//! Nothing here does I/O. The controllers apply [`Desired::objects`]; `vigil render` prints
//! them as a YAML stream and, with `-o DIR`, writes [`Desired::files`] for peer programs
//! (promtool, CoreDNS, the Collector) to check.

pub mod dns;
pub mod otel;
mod rule_yaml;
pub mod slo;

use std::path::PathBuf;

use kube::ResourceExt;
use kube::core::DynamicObject;

use crate::api::cross_cloud_dns::DnsTargetMode;
use crate::inventory::Inventory;

/// A file for a peer program, relative to the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedFile {
    /// Path under the output directory, e.g. `coredns/aws/shop.server`.
    pub path: PathBuf,
    /// File content.
    pub content: String,
}

/// Everything rendered for an inventory.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// Kubernetes objects to apply, in a stable order.
    pub objects: Vec<DynamicObject>,
    /// Files for peer programs, in a stable order.
    pub files: Vec<RenderedFile>,
}

/// Renders every object of the inventory. Objects that fail to render are left out:
/// validation, which runs the same generators, reports them.
///
/// TelemetryPipeline renders each cluster's Collector configuration
/// (`otelcol/<cluster>/<namespace>-<name>.yaml`), which its controller validates with the
/// Collector in that cluster before rolling it out. CrossCloudDNS renders each member cluster's CoreDNS server blocks
/// (every remote counted as healthy) and, for `Dedicated`, the manifests of the
/// Vigil-managed CoreDNS: they go to the member clusters, so they are files here, not
/// objects of this cluster.
pub fn render(inventory: &Inventory) -> Desired {
    let mut desired = Desired::default();
    let slos = crate::parallel::map(&inventory.service_level_objectives, |slo| {
        slo::render_slo(slo, slo.spec.output.kind).ok()
    });
    for rendered in slos.into_iter().flatten() {
        desired.objects.push(rendered.object);
        desired.files.push(rendered.file);
    }
    for dns in &inventory.cross_cloud_dns {
        if let Ok(configs) = dns::render_cross_cloud_dns(dns, inventory, &|_| true) {
            let dir = PathBuf::from("coredns");
            for config in configs {
                let dir = dir.join(&config.cluster);
                if dns.spec.target.mode == DnsTargetMode::Dedicated {
                    desired.files.push(RenderedFile {
                        path: dir.join(format!("{}.yaml", dns.name_any())),
                        content: yaml_stream(&dns::dedicated_objects(dns, &config, None)),
                    });
                }
                desired.files.push(RenderedFile {
                    path: dir.join(format!("{}.server", dns.name_any())),
                    content: config.server,
                });
            }
        }
    }
    for pipeline in &inventory.telemetry_pipelines {
        if let Ok(configs) = otel::render_collector_configs(pipeline, inventory, None) {
            for config in configs {
                desired.files.push(RenderedFile {
                    path: PathBuf::from("otelcol").join(&config.cluster).join(format!(
                        "{}-{}.yaml",
                        pipeline.namespace().unwrap_or_default(),
                        pipeline.name_any()
                    )),
                    content: config.yaml,
                });
            }
        }
    }
    desired
}

/// Objects as one YAML stream, `---` before each.
pub fn yaml_stream(objects: &[serde_json::Value]) -> String {
    objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).unwrap_or_default()))
        .collect()
}
