//! Logs and traces: a `tracing` subscriber writing text or JSON to stderr,
//! and an OpenTelemetry layer that gives every span a trace context, taken
//! from the caller's `traceparent` where there is one, sampled parent-based
//! at `[telemetry] sample_ratio`, and exported over OTLP/gRPC when an
//! endpoint is configured. W3C trace context is the process's propagator,
//! exporter or not, so traces follow a request into its vendor calls.
//!
//! Spans and events carry ids, counts and codes only: never a credential,
//! a password or a user's personal data. Text logs are coloured only on a
//! terminal, so a log file greps cleanly.

use std::{ffi::OsString, io::IsTerminal};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogFormat, TelemetryConfig};

const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,h2=warn,hyper=warn,tower=warn,opentelemetry=warn";

/// Flushes and stops trace export when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("registrar: could not flush traces: {error}");
        }
    }
}

/// Whether text logs carry ANSI colours: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour_logs(stderr_is_terminal: bool, no_color: Option<OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour_logs(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // W3C trace context in and out (gRPC metadata, vendor HTTP headers),
    // whether or not spans are exported
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(Resource::builder().with_service_name("registrar").build());
    let builder = match &config.otlp_endpoint {
        None => builder,
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            builder.with_batch_exporter(exporter)
        }
    };
    // without an exporter the provider still gives spans their trace ids,
    // so an incoming traceparent reaches the vendor calls
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("registrar"))
        // no busy/idle times: they cost two clock reads on every poll of a traced task
        .with_tracked_inactivity(false)
        .with_filter(filter());
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter()))
        .with(otel)
        .try_init()?;
    let provider = Some(provider);
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(
            colour_logs(true, Some(OsString::new())),
            "empty NO_COLOR is unset"
        );
        assert!(!colour_logs(true, Some(OsString::from("1"))));
        assert!(
            !colour_logs(true, Some(OsString::from("false"))),
            "any value disables"
        );
        assert!(
            !colour_logs(false, None),
            "a file or a pipe gets no escapes"
        );
        assert!(!colour_logs(false, Some(OsString::from("1"))));
    }
}
