//! The HTTP side: hyper's HTTP/1.1 server on a tokio listener. `/metrics` is the
//! exposition, OpenMetrics unless the client accepts only the older text format;
//! anything else is a short error.
use super::{metrics::Metrics, text};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// OpenMetrics unless the client names `text/plain` and not OpenMetrics (Prometheus lists
/// both, OpenMetrics first; curl sends `*/*`).
fn wants_openmetrics(accept: &str) -> bool {
    accept.contains("application/openmetrics-text") || !accept.contains("text/plain")
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let accept = req.headers().get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
            let om = wants_openmetrics(&accept);
            metrics.scraped(om);
            let (body, ctype) = if om { (metrics.encode(), CONTENT_TYPE) } else { (text::from_openmetrics(&metrics.encode()), text::CONTENT_TYPE) };
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
            r
        }
        "/" => text(StatusCode::OK, "lazyvma serve: OpenMetrics at /metrics\n"),
        _ => text(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n"),
    }
}

/// Connections held at once. Past it a new one is closed at once: held connections (idle
/// keep-alives, a flood) never take the fds the snapshot pass needs.
pub const MAX_CONNECTIONS: usize = 256;
/// A request's headers must arrive within this (slowloris), and an idle keep-alive
/// connection waiting for its next request is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer (a scrape takes milliseconds; Prometheus reconnects).
pub const LIFETIME: Duration = Duration::from_secs(60);

/// Accepts connections until `stop` completes; connections in flight finish on their own.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // One line per episode of refusals, not one per connection.
    let mut refusing = false;
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            acc = listener.accept() => match acc {
                Ok((s, _)) => s,
                // Out of fds and the like: this client is refused, the server goes on.
                Err(e) => {
                    eprintln!("lazyvma: accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !refusing {
                eprintln!("lazyvma: {MAX_CONNECTIONS} connections held: new ones are closed until some end (idle ones after {} s)", HEADER_TIMEOUT.as_secs());
                refusing = true;
            }
            drop(stream);
            continue;
        };
        refusing = false;
        let m = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let r = respond(&m, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            // A client that hangs up mid-request is its own problem, not the server's.
            let conn = http1::Builder::new().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(LIFETIME, conn).await;
        });
    }
}
