//! Any text as a manifest file: `vigil validate` and `vigil render` must report problems,
//! never panic, whatever the YAML holds. Every object that passes validation is rendered
//! (SLO rules, CoreDNS blocks and objects, Collector configurations and the objects that run
//! and validate them), as the controllers would.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vigil::validate::SchemaValidator;

/// Compiling every CRD's schema and CEL rules takes longer than checking one input.
static VALIDATOR: OnceLock<SchemaValidator> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let validator = VALIDATOR.get_or_init(SchemaValidator::new);
    let loaded = vigil::manifest::load_texts_with(
        validator,
        vec![("fuzz.yaml".into(), text.to_owned())],
        "default",
    );
    let _ = vigil::render::render(&loaded.inventory);
    // Vigil's rule-file writer gives exactly serde_yaml_ng's YAML, whatever the SLO holds.
    for slo in &loaded.inventory.service_level_objectives {
        if let Ok(rules) = vigil::render::slo::render_rules(slo) {
            let expected = serde_yaml_ng::to_string(&rules).expect("serde_yaml_ng writes rules");
            assert_eq!(rules.to_yaml(), expected);
        }
    }
    for pipeline in &loaded.inventory.telemetry_pipelines {
        if let Ok(configs) =
            vigil::render::otel::render_collector_configs(pipeline, &loaded.inventory, Some(50.0))
        {
            for config in &configs {
                let name = vigil::render::otel::config_name(pipeline, config);
                let _ = vigil::render::otel::validation_job(pipeline, &name);
                let _ = vigil::render::otel::collector_objects(pipeline, config, &name);
            }
        }
    }
});
