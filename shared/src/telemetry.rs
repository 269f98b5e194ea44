//! Structured JSON logs. Every step runs its work inside a span carrying `order_id`, and the JSON
//! formatter prints the current span's fields on every line, so each line of an order's work names it.

use tracing_subscriber::fmt::MakeWriter;

fn install<W: for<'w> MakeWriter<'w> + Send + Sync + 'static>(writer: W) {
    use tracing_subscriber::{fmt, EnvFilter};
    let _ = fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer)
        .try_init();
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
