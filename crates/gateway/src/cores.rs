//! Client connections of both front doors run on the gateway's own threads, one single-threaded
//! runtime per core, not on the process's shared work-stealing runtime.
//!
//! A proxied query is a handful of socket wake-ups. On the shared runtime each wake-up may hand
//! the connection's task to another worker (a futex wake, one thread preempting the other), and
//! on a small machine those hand-offs cost more than the query's own work: a plain byte relay on
//! the shared runtime kept about 0.85 of haproxy's throughput for sysbench point selects at 8
//! threads on 2 cores, the same relay with a runtime per core beat haproxy (`docs/benchmarks.md`).
//!
//! A connection stays on the core it was given (the one with the fewest open connections). A
//! backend connection belongs to the core that opened it; one borrowed from the pool by a session
//! on another core is moved there first ([`crate::backend::Backend::rehome`]), so its socket's
//! readiness is always delivered by the runtime that polls it.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;

/// Not a gateway core: a thread of the shared runtime.
pub const SHARED: usize = usize::MAX;

thread_local! {
    static CORE: Cell<usize> = const { Cell::new(SHARED) };
}

/// The gateway core this thread is, or [`SHARED`].
pub fn current() -> usize {
    CORE.with(|c| c.get())
}

struct Core {
    handle: tokio::runtime::Handle,
    open: Arc<AtomicUsize>,
    /// Dropped to end the core's thread (its runtime and the connections on it with it).
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub struct Cores {
    cores: Vec<Core>,
}

/// Counts a connection open on its core until it ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cores {
    /// Starts `n` cores (0: one per CPU). A core that cannot start is left out; with none,
    /// connections run on the shared runtime.
    pub fn start(n: usize) -> Cores {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            n
        };
        let mut cores = Vec::with_capacity(n);
        for i in 0..n {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("strata-gw-{i}-blocking"))
                // Only the blocking pool's threads start here (the core is the thread below):
                // what they do (a large answer, a long statement's analysis) yields the CPU to
                // the cores and the instances, so one client's large work slows others less.
                .on_thread_start(|| {
                    // SAFETY: setpriority has no memory effects; on Linux, who = 0 with
                    // PRIO_PROCESS is the calling thread.
                    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BLOCKING_NICE) };
                })
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a gateway core");
                    continue;
                }
            };
            let handle = rt.handle().clone();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let started = std::thread::Builder::new()
                .name(format!("strata-gw-{i}"))
                .spawn(move || {
                    CORE.with(|c| c.set(i));
                    rt.block_on(async move {
                        let _ = stopped.await;
                    });
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start a gateway core");
                continue;
            }
            cores.push(Core {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                _stop: stop,
            });
        }
        Cores { cores }
    }

    /// Serves an accepted connection with `serve` on the core with the fewest open connections.
    pub fn spawn<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(core) = self
            .cores
            .iter()
            .min_by_key(|c| c.open.load(Ordering::Relaxed))
        else {
            tokio::spawn(serve(tcp));
            return;
        };
        // The socket is registered with the runtime that polls it: taken off this one first.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection to a gateway core");
                return;
            }
        };
        core.open.fetch_add(1, Ordering::Relaxed);
        let open = Open(core.open.clone());
        core.handle.spawn(async move {
            let _open = open;
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp).await,
                Err(e) => tracing::warn!(error = %e, "cannot take a connection on a gateway core"),
            }
        });
    }

    pub fn len(&self) -> usize {
        self.cores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cores.is_empty()
    }
}

/// The nice value of the cores' blocking threads.
const BLOCKING_NICE: libc::c_int = 10;

/// Statements longer than this are analysed on the blocking pool.
const LONG_STATEMENT: usize = 64 * 1024;

/// Analyses a statement's text. A long one (up to the 64 MiB a packet may hold) is read on the
/// blocking pool: on a gateway core, the other connections of the thread would wait meanwhile.
pub(crate) async fn analyze(sql: &str) -> strata_sqlscan::Analysis {
    if sql.len() < LONG_STATEMENT {
        return strata_sqlscan::analyze(sql);
    }
    let owned = sql.to_owned();
    match tokio::task::spawn_blocking(move || strata_sqlscan::analyze(&owned)).await {
        Ok(a) => a,
        Err(_) => strata_sqlscan::analyze(sql),
    }
}

/// [`analyze`] of a statement as the client sent it: a long one is also read as text (checked as
/// UTF-8) on the blocking pool, without a copy.
pub(crate) async fn analyze_bytes(text: bytes::Bytes) -> strata_sqlscan::Analysis {
    if text.len() < LONG_STATEMENT {
        return strata_sqlscan::analyze(&String::from_utf8_lossy(&text));
    }
    let sent = text.clone();
    let read = move || strata_sqlscan::analyze(&String::from_utf8_lossy(&sent));
    match tokio::task::spawn_blocking(read).await {
        Ok(a) => a,
        // Read again here: never an empty analysis, which would let the statement past the guard.
        Err(_) => strata_sqlscan::analyze(&String::from_utf8_lossy(&text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_spread_over_the_cores_and_run_there() {
        let cores = Cores::start(2);
        assert_eq!(cores.len(), 2);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            cores.spawn(tcp, move |mut tcp| async move {
                use tokio::io::AsyncReadExt;
                let _ = tx.send(current());
                // Held open until the client closes, so the next one goes to the other core.
                let mut b = [0u8; 1];
                let _ = tcp.read(&mut b).await;
            });
            // Running (and counted) before the next one is accepted.
            seen.push(rx.recv().await.unwrap());
        }
        seen.sort();
        assert_eq!(seen, vec![0, 0, 1, 1]);
        assert_eq!(current(), SHARED);
    }
}
