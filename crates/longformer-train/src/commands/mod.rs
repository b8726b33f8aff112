//! One module per subcommand of the `longformer` binary.

pub mod bench;
pub mod convert;
pub mod encode;
pub mod eval;
pub mod export;
pub mod prepare;
pub mod train;

/// `error` as the binary prints it: anyhow's report (`message`, then `Caused by:` and the
/// causes), leaving out each cause whose text an earlier message already contains (errors that
/// repeat their source's message in their own, such as a config file's).
pub fn error_report(error: &anyhow::Error) -> String {
    let mut messages: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !messages.iter().any(|m| m.contains(&text)) {
            messages.push(text);
        }
    }
    let mut report = format!("Error: {}", messages[0]);
    match &messages[1..] {
        [] => {}
        [cause] => report.push_str(&format!("\n\nCaused by:\n    {cause}")),
        causes => {
            report.push_str("\n\nCaused by:");
            for (i, cause) in causes.iter().enumerate() {
                report.push_str(&format!("\n    {i}: {cause}"));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::error_report;

    /// An error that repeats its source's message, as the model crate's config errors do.
    #[derive(Debug)]
    struct InFile {
        source: std::io::Error,
    }

    impl std::fmt::Display for InFile {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "config.json: {}", self.source)
        }
    }

    impl std::error::Error for InFile {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_repeated_in_its_error_prints_once() {
        let io = std::io::Error::other("odd window");
        let error = anyhow::Error::new(InFile { source: io }).context("loading the model");
        assert_eq!(
            error_report(&error),
            "Error: loading the model\n\nCaused by:\n    config.json: odd window"
        );
        let error = anyhow::anyhow!("a").context("b").context("c");
        assert_eq!(
            error_report(&error),
            "Error: c\n\nCaused by:\n    0: b\n    1: a"
        );
    }
}
