//! Serving the API (plain HTTP or TLS) and the metrics listener, with a
//! graceful stop: when `Stopping` is raised the listeners stop accepting,
//! requests in flight finish (at most `grace`), and then the server returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::shutdown::Stopping;

/// Serves `app` on `listener` until the stop, then drains.
pub async fn serve_api(
    listener: TcpListener,
    app: Router,
    tls: Option<(PathBuf, PathBuf)>,
    stopping: Stopping,
    grace: Duration,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            tracing::info!(%addr, "bridge listening (http)");
            let mut stop = stopping.clone();
            let server = axum::serve(listener, service).with_graceful_shutdown(async move { stop.wait().await });
            let mut deadline = stopping;
            tokio::select! {
                served = server => served.context("serve http"),
                () = async { deadline.wait().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(?grace, "requests still in flight after the shutdown grace; exiting anyway");
                    Ok(())
                }
            }
        }
        Some((cert, key)) => {
            // ring: pure Rust and C, no cmake; one provider for the process.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .with_context(|| format!("load TLS certificate {} and key {}", cert.display(), key.display()))?;
            let handle = drained_on_stop(stopping, grace);
            tracing::info!(%addr, "bridge listening (https)");
            axum_server::from_tcp_rustls(listener.into_std()?, config)
                .handle(handle)
                .serve(service)
                .await
                .context("serve https")
        }
    }
}

/// An axum-server handle that stops accepting when `stopping` is raised
/// and lets requests in flight finish for at most `grace`.
fn drained_on_stop(mut stopping: Stopping, grace: Duration) -> axum_server::Handle {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        stopping.wait().await;
        stopper.graceful_shutdown(Some(grace));
    });
    handle
}

/// `/metrics` on its own listener, stopping with the API.
pub async fn spawn_metrics(
    addr: SocketAddr,
    metrics: Metrics,
    mut stopping: Stopping,
) -> anyhow::Result<JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("bind metrics {addr}"))?;
    tracing::info!(%addr, "metrics listening");
    let router = Router::new().route("/metrics", axum::routing::get(move || async move { metrics.render() }));
    Ok(tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stopping.wait().await }).await
    }))
}

/// The worker endpoint: TLS with client certificates required and checked
/// against the cluster CA (`config`); the verified certificate's
/// fingerprint goes into every request of its connection
/// (`worker_api::PeerCertificate`). Stops with the API.
pub async fn spawn_workers(
    addr: SocketAddr,
    app: Router,
    config: rustls::ServerConfig,
    stopping: Stopping,
    grace: Duration,
) -> anyhow::Result<JoinHandle<std::io::Result<()>>> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("bind worker endpoint {addr}"))?;
    listener.set_nonblocking(true)?;
    let config = axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(config));
    let acceptor = PeerCertificateAcceptor(axum_server::tls_rustls::RustlsAcceptor::new(config));
    let handle = drained_on_stop(stopping, grace);
    tracing::info!(%addr, "worker endpoint listening (mutual TLS)");
    let server = axum_server::from_tcp(listener).acceptor(acceptor).handle(handle);
    Ok(tokio::spawn(async move { server.serve(app.into_make_service()).await }))
}

/// Wraps rustls's acceptor: after the handshake, the client certificate's
/// fingerprint becomes a request extension (axum-server's `rustls_session`
/// example).
#[derive(Clone)]
struct PeerCertificateAcceptor(axum_server::tls_rustls::RustlsAcceptor);

impl<I, S> axum_server::accept::Accept<I, S> for PeerCertificateAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, super::worker_api::PeerCertificate>;
    type Future = futures_util::future::BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let (stream, service) = inner.accept(stream, service).await?;
            let fingerprint = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| crate::workers::ca::fingerprint(leaf.as_ref()));
            let layer = axum::Extension(super::worker_api::PeerCertificate(fingerprint));
            Ok((stream, tower::Layer::layer(&layer, service)))
        })
    }
}
