//! Bounds on client connections past their acceptance: in all, over both front doors (every socket
//! is a descriptor of the process, which the REST API, the backend connections and the catalog
//! share: past this bound new clients are refused, never the API starved), and per password among
//! logged-in MySQL sessions (one password's idle connections cannot take every place; MySQL's
//! `max_user_connections`). Connections still logging in are bounded apart (see `admission`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct Clients {
    max: usize,
    per_password_max: usize,
    open: AtomicUsize,
    by_password: Mutex<HashMap<String, usize>>,
}

/// A connection's place in all, given back when dropped.
#[derive(Debug)]
pub struct Open(Arc<Clients>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A logged-in session's place among its password's, given back when dropped.
#[derive(Debug)]
pub struct Seat {
    owner: Arc<Clients>,
    password_id: String,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut m = self
            .owner
            .by_password
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.password_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.password_id);
            }
        }
    }
}

impl Clients {
    pub fn new(max: usize, per_password_max: usize) -> Arc<Clients> {
        Arc::new(Clients {
            max: max.max(1),
            per_password_max: per_password_max.max(1),
            open: AtomicUsize::new(0),
            by_password: Mutex::new(HashMap::new()),
        })
    }

    pub fn per_password_max(&self) -> usize {
        self.per_password_max
    }

    /// A place for a newly accepted connection, unless every place is taken.
    pub fn open(self: &Arc<Self>) -> Option<Open> {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Open(self.clone()))
    }

    /// Connections holding a place now.
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A seat for a session logged in with this password, unless it holds its share already.
    pub fn seat(self: &Arc<Self>, password_id: &str) -> Option<Seat> {
        let mut m = self.by_password.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(password_id.to_string()).or_default();
        if *n >= self.per_password_max {
            return None;
        }
        *n += 1;
        Some(Seat {
            owner: self.clone(),
            password_id: password_id.to_string(),
        })
    }
}

/// The bound in all that leaves room under the process's descriptor limit for everything else
/// (backend connections, the REST API, the catalog, log files): a fifth of it, at least 2,048.
pub fn max_for_descriptors(limit: u64) -> usize {
    let reserve = (limit / 5).max(2048);
    limit.saturating_sub(reserve).max(64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_in_all_and_per_password_are_given_back() {
        let c = Clients::new(3, 2);
        let a = c.open().unwrap();
        let b = c.open().unwrap();
        let d = c.open().unwrap();
        assert!(c.open().is_none(), "full");
        drop(b);
        let _e = c.open().expect("a place given back is taken again");
        drop((a, d));
        assert_eq!(c.open_count(), 1);

        let s1 = c.seat("p1").unwrap();
        let _s2 = c.seat("p1").unwrap();
        assert!(c.seat("p1").is_none(), "p1 holds its share");
        let _t = c.seat("p2").expect("another password is not affected");
        drop(s1);
        assert!(c.seat("p1").is_some());
    }

    #[test]
    fn the_bound_leaves_descriptors_for_the_rest() {
        assert_eq!(max_for_descriptors(20_000), 16_000);
        assert_eq!(max_for_descriptors(1024), 64);
        assert_eq!(max_for_descriptors(4096), 2048);
        assert_eq!(max_for_descriptors(1_048_576), 838_861);
    }
}
