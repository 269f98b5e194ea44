//! Structured JSON logs. Every step runs its work inside a span carrying `order_id`, and the JSON
//! formatter prints the current span's fields on every line, so each line of an order's work names it.

use tracing_subscriber::fmt::MakeWriter;

fn install<W: for<'w> MakeWriter<'w> + Send + Sync + 'static>(writer: W) {
    use tracing_subscriber::fmt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let format = fmt::layer().json().with_current_span(true).with_span_list(false).with_target(false).with_writer(writer);
    let _ = tracing_subscriber::registry().with(format).with(level_filter(std::env::var("RUST_LOG").ok().as_deref())).try_init();
}

/// What `RUST_LOG` asks for (`info`, `warn,orderflow_shared=debug`: a level, and levels by target),
/// `info` when unset or unreadable. A target filter, not `EnvFilter`: the same directives without
/// span and field matching, and no regex engine in every binary.
pub fn level_filter(spec: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    spec.and_then(|s| s.parse::<Targets>().ok()).unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// JSON logs on stdout (CloudWatch on AWS).
pub fn init() {
    install(std::io::stdout);
}

/// The same JSON format, written to a file (the local stack keeps its terminal for the demo).
pub fn init_to_file(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    install(std::sync::Mutex::new(file));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::level_filter;
    use tracing::Level;

    #[test]
    fn rust_log_sets_the_level_by_target_and_anything_else_means_info() {
        let info = level_filter(None);
        assert!(info.would_enable("bootstrap", &Level::INFO) && !info.would_enable("bootstrap", &Level::DEBUG));
        let warn = level_filter(Some("warn,orderflow_shared=debug"));
        assert!(!warn.would_enable("bootstrap", &Level::INFO) && warn.would_enable("bootstrap", &Level::WARN));
        assert!(warn.would_enable("orderflow_shared::aws", &Level::DEBUG));
        let garbage = level_filter(Some("=not a level=="));
        assert!(garbage.would_enable("x", &Level::INFO) && !garbage.would_enable("x", &Level::DEBUG));
    }
}
