//! Error messages for people: the innermost cause of an error chain names the address and
//! what failed; the outer message says what was being done.

/// The outer message with the innermost cause appended when it does not already say it.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let (outer, inner) = (error.to_string(), cause.to_string());
    if outer.contains(&inner) {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(&'static str, #[source] Option<Box<Layer>>);

    #[test]
    fn the_innermost_cause_is_appended_once() {
        let inner = Layer("connection refused (os error 111)", None);
        let outer = Layer("error sending request", Some(Box::new(inner)));
        assert_eq!(
            describe(&outer),
            "error sending request: connection refused (os error 111)"
        );
        let said = Layer(
            "GET /x: connection refused",
            Some(Box::new(Layer("connection refused", None))),
        );
        assert_eq!(describe(&said), "GET /x: connection refused");
        assert_eq!(describe(&Layer("alone", None)), "alone");
    }
}
