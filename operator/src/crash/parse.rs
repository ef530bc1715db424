//! Finds a panic or an uncaught exception in a crashed container's output and summarizes
//! it: the language, the first line, and the top frames (innermost first for Go, Rust and
//! Java as they print them; for Python, whose traceback lists the innermost call last, the
//! innermost frames too).
//!
//! The parsers read the last lines of the log and the termination message, which may be
//! truncated anywhere: they never fail, they find what is there.

use serde::{Deserialize, Serialize};

/// Frames kept in a summary.
pub const MAX_FRAMES: usize = 5;
/// Characters kept of the first line.
const MAX_MESSAGE: usize = 500;

/// What a crash's output says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PanicSummary {
    /// `go`, `rust`, `java` or `python`.
    pub language: String,
    /// The panic or exception line, e.g. `panic: runtime error: index out of range`.
    pub message: String,
    /// The top frames: function and, when printed, `file:line`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<String>,
}

/// The last panic or exception in `output`, if any. When several are present (a restart
/// loop's log, a chained exception), the last one is what killed the process.
pub fn summarize(output: &str) -> Option<PanicSummary> {
    let lines: Vec<&str> = output.lines().collect();
    let candidates = [go(&lines), rust(&lines), java(&lines), python(&lines)];
    // The one that starts last in the output.
    candidates
        .into_iter()
        .flatten()
        .max_by_key(|(start, _)| *start)
        .map(|(_, summary)| summary)
}

fn clip(line: &str) -> String {
    let line = line.trim_end();
    match line.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

/// `panic: <msg>` (also `fatal error: <msg>`), then `goroutine N [running]:` and pairs of
/// `function(args)` / `\t/path/file.go:LINE +0x..` lines.
fn go(lines: &[&str]) -> Option<(usize, PanicSummary)> {
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("panic: ") || l.starts_with("fatal error: "))?;
    let mut frames = Vec::new();
    let mut i = start + 1;
    // Skip to the first goroutine header.
    while i < lines.len() && !lines[i].starts_with("goroutine ") {
        i += 1;
    }
    i += 1;
    while i + 1 < lines.len() && frames.len() < MAX_FRAMES {
        let function = lines[i].trim();
        let location = lines[i + 1];
        if function.is_empty() || function.starts_with("goroutine ") {
            break;
        }
        if let Some(location) = location.strip_prefix('\t') {
            let location = location.split(" +0x").next().unwrap_or(location);
            // Drop the argument list, the last `(...)`: `main.(*Store).Get(0xc0)` is
            // `main.(*Store).Get`.
            let function = match function.rfind('(') {
                Some(at) if function.ends_with(')') && at > 0 => &function[..at],
                _ => function,
            };
            if function != "panic" && !function.starts_with("runtime.") {
                frames.push(format!("{function} at {location}"));
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    Some((
        start,
        PanicSummary {
            language: "go".to_owned(),
            message: clip(lines[start]),
            frames,
        },
    ))
}

/// `thread '<name>' panicked at <file:line:col>:` with the message on the next line (Rust
/// 1.73 and later; `thread '<name>' (<id>) panicked at ...` since the thread id is printed),
/// or `thread '<name>' panicked at '<msg>', <file:line:col>` (before); then, with
/// `RUST_BACKTRACE`, numbered frames `  N: path::to::fn` each followed by
/// `at ./src/file.rs:LINE:COL`. Frames of the standard library (by name, or by a location
/// in its sources under `/rustc/` or `./rustc/`, as inlined generic functions show) are
/// left out.
fn rust(lines: &[&str]) -> Option<(usize, PanicSummary)> {
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("thread '") && l.contains(" panicked at "))?;
    let head = lines[start];
    let message = if head.ends_with(':') {
        let location = head
            .split(" panicked at ")
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches(':');
        let text = lines.get(start + 1).map(|l| l.trim()).unwrap_or_default();
        format!("panicked at {location}: {text}")
    } else {
        head.split_once(" panicked at ")
            .map(|(_, rest)| format!("panicked at {rest}"))
            .unwrap_or_else(|| head.to_owned())
    };
    let mut frames = Vec::new();
    let mut i = start + 1;
    while i < lines.len() && frames.len() < MAX_FRAMES {
        let line = lines[i].trim_start();
        if let Some((number, function)) = line.split_once(": ")
            && number.chars().all(|c| c.is_ascii_digit())
            && !number.is_empty()
        {
            let location = lines
                .get(i + 1)
                .map(|l| l.trim_start())
                .and_then(|l| l.strip_prefix("at "));
            let internal = ["std::", "core::", "rust_begin_unwind", "__rust", "<alloc::"]
                .iter()
                .any(|p| function.starts_with(p))
                || location.is_some_and(|l| {
                    // Printed relative to the working folder when under it: `./rustc/`
                    // for a program running in `/`, as in most containers.
                    l.strip_prefix('.').unwrap_or(l).starts_with("/rustc/")
                });
            if !internal {
                frames.push(match location {
                    Some(location) => format!("{function} at {location}"),
                    None => function.to_owned(),
                });
            }
        }
        i += 1;
    }
    Some((
        start,
        PanicSummary {
            language: "rust".to_owned(),
            message: clip(&message),
            frames,
        },
    ))
}

/// `Exception in thread "x" pkg.SomeException: msg` or a bare `pkg.SomeError: msg` line
/// followed by `\tat pkg.Class.method(File.java:LINE)` frames.
fn java(lines: &[&str]) -> Option<(usize, PanicSummary)> {
    let is_frame = |l: &str| l.trim_start().starts_with("at ") && l.contains('(');
    let start = lines.iter().enumerate().rposition(|(i, l)| {
        let followed_by_frame = lines.get(i + 1).is_some_and(|n| is_frame(n));
        let head = l.strip_prefix("Exception in thread ").is_some()
            || l.split(':').next().is_some_and(|c| {
                c.contains('.')
                    && (c.ends_with("Exception") || c.ends_with("Error"))
                    && !c.contains(' ')
            });
        head && followed_by_frame && !l.starts_with("Caused by: ")
    })?;
    // The root cause, when the exception is chained, is the more useful first line.
    let mut message = lines[start].to_owned();
    let mut i = start + 1;
    let mut frames = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        if is_frame(line) {
            if frames.len() < MAX_FRAMES {
                frames.push(line.trim_start().trim_start_matches("at ").to_owned());
            }
        } else if let Some(cause) = line.strip_prefix("Caused by: ") {
            message = format!("{} (caused by {cause})", lines[start]);
        } else if !line.trim_start().starts_with("...") {
            break;
        }
        i += 1;
    }
    Some((
        start,
        PanicSummary {
            language: "java".to_owned(),
            message: clip(&message),
            frames,
        },
    ))
}

/// `Traceback (most recent call last):`, then `  File "f.py", line N, in fn` (each with a
/// source line), then `SomeError: msg`.
fn python(lines: &[&str]) -> Option<(usize, PanicSummary)> {
    let start = lines
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last):"))?;
    let mut frames = Vec::new();
    let mut message = None;
    for line in &lines[start + 1..] {
        if let Some(frame) = line.strip_prefix("  File ") {
            // `"f.py", line 3, in main` -> `main at f.py:3`
            let mut parts = frame.splitn(3, ", ");
            let file = parts.next().unwrap_or_default().trim_matches('"');
            let number = parts
                .next()
                .and_then(|p| p.strip_prefix("line "))
                .unwrap_or_default();
            let function = parts
                .next()
                .and_then(|p| p.strip_prefix("in "))
                .unwrap_or("?");
            frames.push(format!("{function} at {file}:{number}"));
        } else if !line.starts_with(' ') && !line.is_empty() {
            message = Some(*line);
            break;
        }
    }
    frames.reverse();
    frames.truncate(MAX_FRAMES);
    Some((
        start,
        PanicSummary {
            language: "python".to_owned(),
            message: clip(message.unwrap_or("Traceback (message cut off)")),
            frames,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO: &str = "starting server\n\
panic: runtime error: index out of range [3] with length 3\n\
\n\
goroutine 1 [running]:\n\
main.(*Index).lookup(...)\n\
\t/app/orders/lookup.go:17\n\
main.handle(0xc000012345)\n\
\t/app/orders/main.go:42 +0x1d\n\
main.main()\n\
\t/app/orders/main.go:12 +0x25\n\
exit status 2\n";

    #[test]
    fn go_panic() {
        let s = summarize(GO).expect("found");
        assert_eq!(s.language, "go");
        assert_eq!(
            s.message,
            "panic: runtime error: index out of range [3] with length 3"
        );
        assert_eq!(
            s.frames,
            [
                "main.(*Index).lookup at /app/orders/lookup.go:17",
                "main.handle at /app/orders/main.go:42",
                "main.main at /app/orders/main.go:12"
            ]
        );
    }

    #[test]
    fn rust_panic_new_and_old_format() {
        let new = "INFO ready\nthread 'main' panicked at src/config.rs:42:10:\ncalled `Result::unwrap()` on an `Err` value: MissingField(\"port\")\nstack backtrace:\n   0: rust_begin_unwind\n             at /rustc/abc/library/std/src/panicking.rs:665:5\n   1: core::panicking::panic_fmt\n   2: orders::config::load\n             at ./src/config.rs:42:10\n   3: orders::main\n             at ./src/main.rs:7:5\n";
        let s = summarize(new).expect("found");
        assert_eq!(s.language, "rust");
        assert_eq!(
            s.message,
            "panicked at src/config.rs:42:10: called `Result::unwrap()` on an `Err` value: MissingField(\"port\")"
        );
        assert_eq!(
            s.frames,
            [
                "orders::config::load at ./src/config.rs:42:10",
                "orders::main at ./src/main.rs:7:5"
            ]
        );
        let old = "thread 'worker-3' panicked at 'attempt to divide by zero', src/math.rs:3:5\nnote: run with `RUST_BACKTRACE=1`";
        let s = summarize(old).expect("found");
        assert_eq!(
            s.message,
            "panicked at 'attempt to divide by zero', src/math.rs:3:5"
        );
        assert!(s.frames.is_empty());
    }

    #[test]
    fn java_exception_with_cause() {
        let out = "12:00:01 INFO started\nException in thread \"main\" java.lang.IllegalStateException: config invalid\n\tat com.shop.Config.load(Config.java:88)\n\tat com.shop.Main.main(Main.java:12)\nCaused by: java.lang.NumberFormatException: For input string: \"x\"\n\tat java.base/java.lang.Integer.parseInt(Integer.java:652)\n\t... 2 more\n";
        let s = summarize(out).expect("found");
        assert_eq!(s.language, "java");
        assert_eq!(
            s.message,
            "Exception in thread \"main\" java.lang.IllegalStateException: config invalid (caused by java.lang.NumberFormatException: For input string: \"x\")"
        );
        assert_eq!(s.frames[0], "com.shop.Config.load(Config.java:88)");
        assert_eq!(s.frames.len(), 3);
    }

    #[test]
    fn python_traceback_innermost_first() {
        let out = "Traceback (most recent call last):\n  File \"/app/main.py\", line 30, in <module>\n    main()\n  File \"/app/main.py\", line 21, in main\n    load(path)\n  File \"/app/config.py\", line 9, in load\n    return cfg[\"port\"]\nKeyError: 'port'\n";
        let s = summarize(out).expect("found");
        assert_eq!(s.language, "python");
        assert_eq!(s.message, "KeyError: 'port'");
        assert_eq!(
            s.frames,
            [
                "load at /app/config.py:9",
                "main at /app/main.py:21",
                "<module> at /app/main.py:30"
            ]
        );
    }

    #[test]
    fn the_last_crash_wins_and_plain_output_has_none() {
        let both = format!(
            "{GO}\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: late\n"
        );
        assert_eq!(summarize(&both).expect("found").language, "python");
        assert_eq!(summarize("ok\nshutting down: SIGTERM\n"), None);
        assert_eq!(summarize(""), None);
        // Truncated right after the head: still a summary, no frames.
        let cut = summarize("panic: boom").expect("found");
        assert!(cut.frames.is_empty());
    }
}
