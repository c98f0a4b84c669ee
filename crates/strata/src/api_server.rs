//! The REST API's accept loop: the router on hyper's HTTP/1.1 server with the limits
//! `axum::serve` does not set. A connection must send its request headers within the login
//! timeout, and connections not yet at their first request are bounded in all and per source
//! address (the gateway's admission), so idle or slow sockets cannot take the descriptors the API
//! and the gateway share.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_gateway::admission::Admission;
use tokio::net::TcpListener;

/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    admission: Arc<Admission>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors, say: the loop must not spin on the error.
                Err(e) => {
                    tracing::warn!(error = %e, "the API cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // The place is given back once the first request's headers are in.
        let ticket = Arc::new(Mutex::new(None));
        let held = ticket.clone();
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                ticket.lock().unwrap_or_else(|e| e.into_inner()).take();
                tower_service::Service::call(&mut app.clone(), req)
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
        let watched = graceful.watch(conn);
        let admission = admission.clone();
        tokio::spawn(async move {
            // Past the bound on connections not yet at their first request, after a moment's
            // wait: closed.
            let Some(place) = admission
                .enter_within(peer.ip(), strata_gateway::admission::WAIT)
                .await
            else {
                return;
            };
            let eviction = place.eviction();
            *held.lock().unwrap_or_else(|e| e.into_inner()) = Some(place);
            let evicted = async {
                loop {
                    eviction.notified().await;
                    // Only before the first request: after it the place is given back already.
                    if held.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                        break;
                    }
                }
            };
            tokio::select! {
                _ = watched => {}
                _ = evicted => tracing::debug!(%peer, "no request yet, closed to make room for another address"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API requests still running after {DRAIN:?} were cut off");
    }
}
