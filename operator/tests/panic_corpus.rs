//! The panic and exception parsers over a corpus of crash outputs (`tests/panics/*.txt`):
//! each file's header says the language, the first line and the first frame the summary
//! must hold (`# language: none` when there is nothing to find). Every file is also cut to
//! a small snapshot, which must stay bounded and marked.

use vigil::crash::parse::summarize;
use vigil::crash::{Snapshot, TRUNCATED};

#[test]
fn every_crash_output_is_summarized_as_its_header_says() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/panics");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the corpus")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "a corpus, not an example");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let (header, output) = text.split_once("---\n").expect("a header");
        let field = |name: &str| {
            header
                .lines()
                .find_map(|l| l.strip_prefix(&format!("# {name}: ")))
        };
        let found = summarize(output);
        let name = path.display();
        match field("language") {
            Some("none") => assert_eq!(found, None, "{name}"),
            Some(language) => {
                let summary = found.unwrap_or_else(|| panic!("{name}: nothing found"));
                assert_eq!(summary.language, language, "{name}");
                assert_eq!(Some(summary.message.as_str()), field("message"), "{name}");
                match field("frame") {
                    Some(frame) => assert_eq!(
                        summary.frames.first().map(String::as_str),
                        Some(frame),
                        "{name}"
                    ),
                    None => assert_eq!(
                        summary.frames.len().to_string(),
                        field("frames").unwrap_or("0"),
                        "{name}"
                    ),
                }
            }
            None => panic!("{name}: no language header"),
        }
        let snapshot = Snapshot {
            time: "2026-11-27T08:00:00Z".into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            node: None,
            container: "app".into(),
            container_id: String::new(),
            image: "i".into(),
            exit_code: 2,
            signal: None,
            reason: "Error".into(),
            restart_count: 1,
            termination_message: output.to_owned(),
            log_tail: output.repeat(20),
            panic: summarize(output),
            unseen_restarts: 0,
        };
        let json = snapshot.to_bounded_json(1024);
        assert!(json.len() <= 1024, "{name}: {} bytes", json.len());
        assert!(json.contains(TRUNCATED), "{name}");
    }
}
