//! Backend connection pools, one per (branch, role, capability profile, charset): many client
//! connections share at most `size` backend connections each. A connection goes back to the pool only
//! in a clean state; a session that changed state keeps its connection (pinned) until it ends, and the
//! connection is reset before anyone else gets it.
//!
//! All pools of one branch together hold at most the branch's share of its instance's connections
//! (`Target::branch_max`): past it, idle connections of the branch's other pools are closed to make
//! room, else the caller is refused. One password's pools hold at most three quarters of that
//! bound, so one application cannot take every connection its branch has from the others. Idle
//! connections are closed after a minute unused, so what a burst opened goes back to the instance.

use crate::backend::{Backend, BackendError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_model::Role;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Idle connections unused this long are closed (by [`Pools::reap`], and when found at acquire).
pub const IDLE_MAX: Duration = Duration::from_secs(60);

/// How long a new connection waits for room under the branch's bound.
const BRANCH_FULL_WAIT: Duration = Duration::from_secs(2);

/// Open backend connections per branch, over all its pools, and per (branch, password).
type BranchCounts = Arc<Mutex<Counts>>;

#[derive(Debug, Default)]
struct Counts {
    branches: HashMap<String, usize>,
    passwords: HashMap<(String, String), usize>,
}

/// One password's share of its branch's bound.
pub fn password_max(branch_max: usize) -> usize {
    (branch_max * 3 / 4).max(1)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub branch_id: String,
    /// Each password has its own server user, so its own pools.
    pub password_id: String,
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
    /// Connections all the branch's pools may hold to its instance together.
    pub branch_max: usize,
}

pub struct Pool {
    idle: Mutex<Vec<Backend>>,
    slots: Arc<Semaphore>,
    open: AtomicUsize,
    branch_id: String,
    password_id: String,
    branches: BranchCounts,
}

impl Pool {
    /// `n` of this pool's connections were closed.
    fn closed(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.open.fetch_sub(n, Ordering::Relaxed);
        let mut counts = self.branches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.branches.get_mut(&self.branch_id) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                counts.branches.remove(&self.branch_id);
            }
        }
        let key = (self.branch_id.clone(), self.password_id.clone());
        if let Some(c) = counts.passwords.get_mut(&key) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                counts.passwords.remove(&key);
            }
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Backend>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    #[error("the branch's instance has no room for more connections from the gateway ({0} are open, all in use)")]
    BranchFull(usize),
    #[error("this password holds its whole share of the branch's connections ({0}, all in use)")]
    PasswordFull(usize),
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

    /// The lease with its connection moved to the calling thread's gateway core, if it was on
    /// another (an HTTP SQL session's requests may come on different client connections, so
    /// cores). On failure the connection is closed.
    pub fn here(self) -> std::io::Result<Lease> {
        if self.backend.home == crate::cores::current() {
            return Ok(self);
        }
        let Lease {
            backend,
            pool,
            _permit,
        } = self;
        match backend.rehome() {
            Ok(backend) => Ok(Lease {
                backend,
                pool,
                _permit,
            }),
            Err(e) => {
                pool.closed(1);
                Err(e)
            }
        }
    }

    /// Closes the connection instead of returning it (broken, or in an unknown state).
    pub fn discard(self) {
        self.pool.closed(1);
    }
}

pub struct Pools {
    size: usize,
    wait: Duration,
    map: Mutex<foldhash::HashMap<PoolKey, Arc<Pool>>>,
    branches: BranchCounts,
}

enum Reserved {
    Yes,
    BranchFull,
    PasswordFull,
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
            map: Mutex::new(foldhash::HashMap::default()),
            branches: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Counts a new connection of the branch and password, if both have room; else closes an
    /// idle connection of one of the branch's pools (of the password's own, when its share is
    /// what is full) to make room.
    fn reserve(&self, key: &PoolKey, max: usize) -> Reserved {
        let mine = (key.branch_id.clone(), key.password_id.clone());
        for _ in 0..2 {
            let own_share_full = {
                let mut counts = self.branches.lock().unwrap_or_else(|e| e.into_inner());
                let branch = counts.branches.get(&key.branch_id).copied().unwrap_or(0);
                let password = counts.passwords.get(&mine).copied().unwrap_or(0);
                if password >= password_max(max) {
                    true
                } else if branch < max.max(1) {
                    *counts.branches.entry(key.branch_id.clone()).or_insert(0) += 1;
                    *counts.passwords.entry(mine.clone()).or_insert(0) += 1;
                    return Reserved::Yes;
                } else {
                    false
                }
            };
            let pools: Vec<Arc<Pool>> = self
                .map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(k, _)| {
                    k.branch_id == key.branch_id
                        && (!own_share_full || k.password_id == key.password_id)
                })
                .map(|(_, p)| p.clone())
                .collect();
            let evicted = pools.iter().find_map(|p| {
                let b = p.idle().pop()?;
                drop(b);
                Some(p.clone())
            });
            match evicted {
                Some(p) => p.closed(1),
                None if own_share_full => return Reserved::PasswordFull,
                None => return Reserved::BranchFull,
            }
        }
        Reserved::BranchFull
    }

    /// Closes idle connections unused for `older_than` (and pools left with nothing).
    pub fn reap(&self, older_than: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for p in map.values() {
            let closed = {
                let mut idle = p.idle();
                let before = idle.len();
                idle.retain(|b| b.last_used.elapsed() < older_than);
                before - idle.len()
            };
            p.closed(closed);
        }
        map.retain(|_, p| p.open.load(Ordering::Relaxed) > 0 || Arc::strong_count(p) > 1);
    }

    fn pool(&self, key: &PoolKey) -> Arc<Pool> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // Found without cloning the key (two strings) at every lease.
        if let Some(p) = map.get(key) {
            return p.clone();
        }
        map.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Pool {
                    idle: Mutex::new(Vec::new()),
                    slots: Arc::new(Semaphore::new(self.size)),
                    open: AtomicUsize::new(0),
                    branch_id: key.branch_id.clone(),
                    password_id: key.password_id.clone(),
                    branches: self.branches.clone(),
                })
            })
            .clone()
    }

    /// Borrows a connection: an idle one if there is one, else a new one while the pool has room, else
    /// waits for one to come back.
    pub async fn acquire(&self, key: &PoolKey, target: &Target) -> Result<Lease, PoolError> {
        let pool = self.pool(key);
        // A free slot is taken at once, without a timer.
        let permit = match pool.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(self.wait, pool.slots.clone().acquire_owned())
                .await
                .map_err(|_| PoolError::Exhausted(self.wait))?
                .map_err(|_| PoolError::Exhausted(self.wait))?,
        };
        let here = crate::cores::current();
        loop {
            // One of this core's own first (no move), the most recently used of them.
            let candidate = {
                let mut idle = pool.idle();
                match idle.iter().rposition(|b| b.home == here) {
                    Some(i) => Some(idle.remove(i)),
                    None => idle.pop(),
                }
            };
            match candidate {
                Some(b)
                    if b.addr == target.addr
                        && b.last_used.elapsed() < IDLE_MAX
                        && !b.idle_unusable() =>
                {
                    let backend = if b.home == here {
                        b
                    } else {
                        match b.rehome() {
                            Ok(b) => b,
                            Err(_) => {
                                pool.closed(1);
                                continue;
                            }
                        }
                    };
                    return Ok(Lease {
                        backend,
                        pool,
                        _permit: permit,
                    });
                }
                Some(_) => {
                    // Stale (old instance address, idle too long, or closed by the instance):
                    // close it.
                    pool.closed(1);
                }
                None => break,
            }
        }
        // At the branch's bound, a connection about to come back (a session ending) is waited for
        // a moment before the caller is refused.
        let deadline = Instant::now() + BRANCH_FULL_WAIT;
        loop {
            let full = match self.reserve(key, target.branch_max) {
                Reserved::Yes => break,
                Reserved::BranchFull => PoolError::BranchFull(target.branch_max),
                Reserved::PasswordFull => PoolError::PasswordFull(password_max(target.branch_max)),
            };
            if Instant::now() >= deadline {
                return Err(full);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pool.open.fetch_add(1, Ordering::Relaxed);
        let connected = Backend::connect(
            target.addr,
            &target.user,
            &target.password,
            &target.schema,
            key.profile,
            key.charset,
        )
        .await;
        let mut b = match connected {
            Ok(b) => b,
            Err(e) => {
                pool.closed(1);
                return Err(e.into());
            }
        };
        if let Some(limit) = target.statement_limit {
            if let Err(e) = b.set_statement_limit(Some(limit)).await {
                pool.closed(1);
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
