//! The generated CoreDNS server blocks of `CrossCloudDNS`: golden snapshots (review changes
//! with `cargo insta review`) for 2, 3 and 10 clusters with each option, and the properties
//! every cluster's file must have. (One cluster is refused by the CRD: a zone shared by one
//! cluster needs no cross-cloud DNS.)

use std::fmt::Write as _;

use vigil::inventory::Inventory;
use vigil::manifest;
use vigil::render::dns::{COREDNS_IMAGE, ClusterConfig, dedicated_objects, render_cross_cloud_dns};

const DOMAINS: [&str; 3] = ["cluster.local", "cluster.local", "onprem.local"];

/// Loads `count` MemberClusters (`c0`, `c1`, ... or the given names) and one CrossCloudDNS.
fn fixture(names: &[String], dns_spec: &str) -> Inventory {
    let mut yaml = String::new();
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            yaml,
            "---\napiVersion: vigil.io/v1alpha1\nkind: MemberCluster\nmetadata: {{name: {name}}}\nspec:\n  provider: {}\n  region: r{i}\n  local: {}\n{}  dns:\n    endpoints: [\"127.0.0.1:{}\"]\n    clusterDomain: {}\n",
            ["aws", "aliyun", "vmware"][i % 3],
            i == 0,
            if i == 0 {
                String::new()
            } else {
                format!(
                    "  apiServer: {{kubeconfigSecretRef: {{namespace: vigil-system, name: {name}-kubeconfig, key: kubeconfig}}}}\n"
                )
            },
            15353 + i,
            DOMAINS[i % 3]
        );
    }
    let _ = write!(
        yaml,
        "---\napiVersion: vigil.io/v1alpha1\nkind: CrossCloudDNS\nmetadata: {{name: mesh}}\nspec:\n  clusters: [{}]\n{dns_spec}",
        names.join(", ")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fixture.yaml");
    std::fs::write(&path, yaml).expect("write");
    let loaded = manifest::load(&[path], "default").expect("readable");
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.inventory
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn render(inventory: &Inventory, healthy: &dyn Fn(&str) -> bool) -> Vec<ClusterConfig> {
    render_cross_cloud_dns(&inventory.cross_cloud_dns[0], inventory, healthy).expect("renders")
}

/// What every cluster's file must hold, whatever the options.
fn check_properties(configs: &[ClusterConfig], clusters: &[String], zone: &str) {
    assert_eq!(configs.len(), clusters.len());
    for config in configs {
        let server = &config.server;
        // The shared zone, answered locally first.
        assert!(
            server.contains(&format!("    kubernetes {zone} {{\n        fallthrough")),
            "{server}"
        );
        // A per-cluster block for every cluster, and only the own one is answered locally.
        for cluster in clusters {
            assert!(
                server.contains(&format!("\n{cluster}.{zone}:")),
                "{}: no block for {cluster}",
                config.cluster
            );
        }
        assert!(server.contains(&format!("    kubernetes {}.{zone}\n", config.cluster)));
        // The chain ends with a forward that has no `next` (the last answer stands).
        let shared = shared_block(server, zone);
        let forwards = shared.matches("    forward . 127.0.0.1:").count();
        assert_eq!(forwards, clusters.len() - 1, "{}", config.cluster);
        assert_eq!(
            shared.matches("next NXDOMAIN SERVFAIL").count(),
            clusters.len() - 2
        );
        // Braces balance.
        assert_eq!(server.matches('{').count(), server.matches('}').count());
    }
}

/// The first server block of the shared zone (the one clients ask).
fn shared_block<'a>(server: &'a str, zone: &str) -> &'a str {
    let start = server.find(&format!("\n{zone}:")).expect("a shared block") + 1;
    let end = start + server[start..].find("\n}\n").expect("closed");
    &server[start..end]
}

#[test]
fn two_clusters_with_defaults() {
    let clusters = names(&["aws", "vmware"]);
    let inventory = fixture(&clusters, "");
    let configs = render(&inventory, &|_| true);
    check_properties(&configs, &clusters, "clusterset.local");
    assert!(!configs[0].server.contains("edns0"));
    insta::assert_snapshot!("two-clusters-aws", configs[0].server);
    insta::assert_snapshot!("two-clusters-vmware", configs[1].server);
}

#[test]
fn three_clusters_with_failover_and_edns0() {
    let clusters = names(&["aws", "aliyun", "vmware"]);
    let inventory = fixture(
        &clusters,
        "  failover: [vmware, aliyun]\n  edns0: {tagSourceCluster: true, optionCode: 65010}\n",
    );
    let configs = render(&inventory, &|_| true);
    check_properties(&configs, &clusters, "clusterset.local");
    for config in &configs {
        assert!(config.server.contains(&format!(
            "rewrite edns0 local set 0xfdf2 {}",
            config.cluster
        )));
    }
    // aws asks vmware before aliyun, as the failover list says; vmware asks aliyun then aws.
    assert!(configs[0].server.contains("then vmware, aliyun."));
    assert!(configs[2].server.contains("then aliyun, aws."));
    insta::assert_snapshot!("three-clusters-aws", configs[0].server);
}

#[test]
fn an_unhealthy_remote_leaves_the_chain_but_keeps_its_name() {
    let clusters = names(&["aws", "aliyun", "vmware"]);
    let inventory = fixture(&clusters, "  failover: [aliyun, vmware]\n");
    let configs = render(&inventory, &|c| c != "aliyun");
    let aws = &configs[0].server;
    assert!(aws.contains("then vmware."), "{aws}");
    assert!(!aws.contains("Shared zone through aliyun"));
    assert!(
        aws.contains("\naliyun.clusterset.local:15353 {"),
        "per-cluster names stay"
    );
    let none = render(&inventory, &|_| false);
    assert!(
        none[0]
            .server
            .contains("then no remote cluster (none is healthy).")
    );
    assert!(!shared_block(&none[0].server, "clusterset.local").contains("forward"));
}

#[test]
fn ten_clusters_in_a_custom_zone() {
    let clusters: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let inventory = fixture(
        &clusters,
        "  zone: mesh.example.internal\n  failover: [c7, c3]\n  edns0: {tagSourceCluster: true}\n",
    );
    let configs = render(&inventory, &|_| true);
    check_properties(&configs, &clusters, "mesh.example.internal");
    assert!(
        configs[0]
            .server
            .contains("then c7, c3, c1, c2, c4, c5, c6, c8, c9.")
    );
    // Listener ports never collide across clusters sharing a host.
    let mut ports = std::collections::BTreeSet::new();
    for config in &configs {
        for line in config
            .server
            .lines()
            .filter(|l| l.starts_with("mesh.example.internal:10"))
        {
            assert!(ports.insert(line.to_owned()), "{line} twice");
        }
    }
    assert_eq!(ports.len(), 10 * 9);
    insta::assert_snapshot!("ten-clusters-c0", configs[0].server);
}

#[test]
fn dedicated_coredns_listens_unprivileged_and_serves_its_own_domain() {
    let clusters = names(&["aws", "aliyun", "vmware"]);
    let inventory = fixture(
        &clusters,
        "  target: {mode: Dedicated, namespace: dns, replicas: 3}\n",
    );
    let dns = &inventory.cross_cloud_dns[0];
    let configs = render(&inventory, &|_| true);
    check_properties(&configs, &clusters, "clusterset.local");
    let vmware = &configs[2].server;
    // Every client-facing block is on the pod's unprivileged port, the own cluster domain is
    // served too, and the Corefile reloads itself when the ConfigMap changes.
    assert!(vmware.contains("\nclusterset.local:1053 {\n    errors\n    reload\n"));
    assert!(vmware.contains("\nvmware.clusterset.local:1053 {"));
    assert!(vmware.contains("\nonprem.local:1053 {"), "{vmware}");
    assert!(!vmware.contains(":15355 {"), "{vmware}");
    let objects = dedicated_objects(dns, &configs[2], Some("10.96.0.53"));
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Service"
        ]
    );
    for object in &objects {
        assert_eq!(object["metadata"]["name"], "vigil-dns-mesh");
    }
    let config_map = &objects[3];
    assert_eq!(config_map["data"]["Corefile"], vmware.as_str());
    assert!(
        config_map["data"]["stub-domain.server"]
            .as_str()
            .is_some_and(
                |s| s.contains("clusterset.local:53 {") && s.contains("forward . 10.96.0.53")
            )
    );
    let pod = &objects[4]["spec"]["template"]["spec"];
    assert_eq!(objects[4]["spec"]["replicas"], 3);
    assert_eq!(pod["containers"][0]["image"], COREDNS_IMAGE);
    assert_eq!(
        pod["containers"][0]["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    // Without an address yet, no stub-domain snippet.
    let first = dedicated_objects(dns, &configs[2], None);
    assert!(first[3]["data"].get("stub-domain.server").is_none());
    insta::assert_snapshot!("dedicated-vmware", vigil::render::yaml_stream(&objects));
}

#[test]
fn the_dedicated_image_is_the_coredns_the_tests_build() {
    let go_mod = include_str!("../../e2e/tools/coredns/go.mod");
    let version = COREDNS_IMAGE.rsplit(':').next().expect("a tag");
    assert!(
        go_mod.contains(&format!("github.com/coredns/coredns v{version}\n")),
        "{COREDNS_IMAGE} is not the CoreDNS pinned in e2e/tools/coredns/go.mod"
    );
}
