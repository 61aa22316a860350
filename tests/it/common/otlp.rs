//! An OTLP/gRPC trace receiver for tests: the collector's own protocol
//! (opentelemetry.proto.collector.trace.v1.TraceService), served on a
//! loopback port, keeping every export request it is sent.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::Span,
};
use prost::Message;
use tokio::task::JoinHandle;

#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Keep {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

pub struct OtlpReceiver {
    /// What `[telemetry] otlp_endpoint` takes.
    pub endpoint: String,
    kept: Keep,
    server: JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let kept = Keep::default();
        let service = TraceServiceServer::new(kept.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        OtlpReceiver {
            endpoint,
            kept,
            server,
        }
    }

    /// Every span received, in the order received.
    pub fn spans(&self) -> Vec<Span> {
        self.kept
            .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }

    /// Every export request as sent on the wire (protobuf), concatenated:
    /// what a collector would store.
    pub fn wire_bytes(&self) -> Vec<u8> {
        self.kept
            .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(Message::encode_to_vec)
            .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
