//! Backend connection pools, one per (branch, role, capability profile, charset): many client
//! connections share at most `size` backend connections each. A connection goes back to the pool only
//! in a clean state; a session that changed state keeps its connection (pinned) until it ends, and the
//! connection is reset before anyone else gets it.

use crate::backend::{Backend, BackendError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_model::Role;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Idle connections older than this are closed instead of reused.
const IDLE_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub branch_id: String,
    pub role: Role,
    pub profile: u32,
    pub charset: u8,
}

/// Where and as whom to connect for a pool.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
    pub schema: String,
    /// The session's `max_statement_time` on the instance: the default statement time limit,
    /// enforced by the server at no cost per query.
    pub statement_limit: Option<Duration>,
}

pub struct Pool {
    idle: Mutex<Vec<Backend>>,
    slots: Arc<Semaphore>,
    open: AtomicUsize,
}

/// A backend connection on loan from a pool.
pub struct Lease {
    pub backend: Backend,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connection pool for this branch is exhausted: no backend connection became free within {0:?}")]
    Exhausted(Duration),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl Lease {
    /// Returns a clean connection (not in a transaction, no session state) to the pool; one
    /// holding a statement's warnings or error has them cleared first (in the background, so the
    /// client is not kept waiting; its pool slot is held until then).
    pub fn release(mut self) {
        if self.backend.diagnostics {
            tokio::spawn(async move {
                match self.backend.clear_diagnostics().await {
                    Ok(()) => self.release(),
                    Err(_) => self.discard(),
                }
            });
            return;
        }
        let mut b = self.backend;
        b.last_used = Instant::now();
        self.pool
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(b);
    }

    /// Closes the connection instead of returning it (broken, or in an unknown state).
    pub fn discard(self) {
        self.pool.open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Pools {
    size: usize,
    wait: Duration,
    map: Mutex<HashMap<PoolKey, Arc<Pool>>>,
}

#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    pub pools: usize,
    pub open: usize,
    pub idle: usize,
}

impl Pools {
    pub fn new(size: usize, wait: Duration) -> Pools {
        Pools {
            size: size.max(1),
            wait,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn pool(&self, key: &PoolKey) -> Arc<Pool> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Pool {
                    idle: Mutex::new(Vec::new()),
                    slots: Arc::new(Semaphore::new(self.size)),
                    open: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Borrows a connection: an idle one if there is one, else a new one while the pool has room, else
    /// waits for one to come back.
    pub async fn acquire(&self, key: &PoolKey, target: &Target) -> Result<Lease, PoolError> {
        let pool = self.pool(key);
        let permit = tokio::time::timeout(self.wait, pool.slots.clone().acquire_owned())
            .await
            .map_err(|_| PoolError::Exhausted(self.wait))?
            .map_err(|_| PoolError::Exhausted(self.wait))?;
        loop {
            let candidate = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match candidate {
                Some(b)
                    if b.addr == target.addr
                        && b.last_used.elapsed() < IDLE_MAX
                        && !b.idle_unusable() =>
                {
                    return Ok(Lease {
                        backend: b,
                        pool,
                        _permit: permit,
                    });
                }
                Some(_) => {
                    // Stale (old instance address, idle too long, or closed by the instance):
                    // close it.
                    pool.open.fetch_sub(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        let b = Backend::connect(
            target.addr,
            &target.user,
            &target.password,
            &target.schema,
            key.profile,
            key.charset,
        )
        .await?;
        pool.open.fetch_add(1, Ordering::Relaxed);
        let mut b = b;
        if let Some(limit) = target.statement_limit {
            if let Err(e) = b.set_statement_limit(Some(limit)).await {
                pool.open.fetch_sub(1, Ordering::Relaxed);
                return Err(e.into());
            }
        }
        Ok(Lease {
            backend: b,
            pool,
            _permit: permit,
        })
    }

    pub fn stats(&self) -> PoolStats {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = PoolStats {
            pools: map.len(),
            ..Default::default()
        };
        for p in map.values() {
            s.open += p.open.load(Ordering::Relaxed);
            s.idle += p.idle.lock().unwrap_or_else(|e| e.into_inner()).len();
        }
        s
    }
}
