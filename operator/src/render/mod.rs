//! Pure generators: inventory + spec -> the objects and files Vigil applies or writes.
//!
//! Nothing here does I/O. The controllers apply [`Desired::objects`]; `vigil render` prints
//! them as a YAML stream and, with `-o DIR`, writes [`Desired::files`] for peer programs
//! (promtool, CoreDNS, the Collector) to check.

use std::path::PathBuf;

use kube::core::DynamicObject;

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

/// Renders every object of the inventory. The inventory must have passed validation.
///
/// The generators of each capability plug in here as they arrive; a kind without one
/// renders nothing and its controller only validates and reports.
pub fn render(inventory: &Inventory) -> Desired {
    let _ = inventory;
    Desired::default()
}
