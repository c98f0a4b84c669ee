//! Admission of connections that have not logged in yet: a bound on how many there are in all and
//! per source address, so idle or slow sockets cannot take every descriptor of the process (which
//! the REST API and logged-in clients share). A connection over a bound waits a moment for a place
//! (a burst from one application server is normal, and each place is held only until its login or
//! first request is read); waiting connections are bounded too. When every place is taken, a
//! newcomer from an address holding fewer than another makes that address's oldest connection
//! give its place up: sockets held open from a few addresses cannot keep everyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a connection over a bound waits for a place before it is refused.
pub const WAIT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Admission {
    total_max: usize,
    per_address_max: usize,
    state: Mutex<State>,
    /// Told when a place is given back.
    freed: tokio::sync::Notify,
    /// Connections waiting for a place.
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    next_id: u64,
    /// The places each address holds, oldest first.
    by_address: HashMap<IpAddr, Vec<Held>>,
}

#[derive(Debug)]
struct Held {
    id: u64,
    eviction: Arc<tokio::sync::Notify>,
    evicted: bool,
}

/// A place held until dropped (the login finished, or the connection ended).
#[derive(Debug)]
pub struct Ticket {
    owner: Arc<Admission>,
    address: IpAddr,
    id: u64,
    eviction: Arc<tokio::sync::Notify>,
}

impl Ticket {
    /// Told when this place is wanted by a connection from an address holding fewer: the
    /// connection should end (it has not logged in yet).
    pub fn eviction(&self) -> Arc<tokio::sync::Notify> {
        self.eviction.clone()
    }
}

impl Admission {
    pub fn new(total_max: usize, per_address_max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            total_max: total_max.max(1),
            per_address_max: per_address_max.max(1),
            state: Mutex::new(State::default()),
            freed: tokio::sync::Notify::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// A place, waiting up to `wait` for one to be given back when the bounds are reached. At most
    /// as many connections wait as may hold places; past that, or at the deadline, `None`.
    pub async fn enter_within(self: &Arc<Self>, address: IpAddr, wait: Duration) -> Option<Ticket> {
        if let Some(t) = self.enter(address) {
            return Some(t);
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.total_max {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let _waiting = Waiting(&self.waiting);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a place given back in between is not missed.
            freed.as_mut().enable();
            if let Some(t) = self.enter(address) {
                return Some(t);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.enter(address);
            }
        }
    }

    /// A place for a connection from `address`, unless the bounds are reached. When only the
    /// bound in all is, the address holding the most places (more than one more than this one
    /// does) is told to give its oldest up, which a wait then takes.
    pub fn enter(self: &Arc<Self>, address: IpAddr) -> Option<Ticket> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let here = s.by_address.get(&address).map_or(0, Vec::len);
        if here >= self.per_address_max {
            return None;
        }
        if s.total >= self.total_max {
            let live = |v: &Vec<Held>| v.iter().filter(|h| !h.evicted).count();
            if let Some(heaviest) = s
                .by_address
                .values_mut()
                .max_by_key(|v| live(v))
                .filter(|v| live(v) > here + 1)
            {
                if let Some(h) = heaviest.iter_mut().find(|h| !h.evicted) {
                    h.evicted = true;
                    h.eviction.notify_one();
                }
            }
            return None;
        }
        s.total += 1;
        s.next_id += 1;
        let id = s.next_id;
        let eviction = Arc::new(tokio::sync::Notify::new());
        s.by_address.entry(address).or_default().push(Held {
            id,
            eviction: eviction.clone(),
            evicted: false,
        });
        Some(Ticket {
            owner: self.clone(),
            address,
            id,
            eviction,
        })
    }

    /// Connections holding a place now.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.owner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(v) = s.by_address.get_mut(&self.address) {
            v.retain(|h| h.id != self.id);
            if v.is_empty() {
                s.by_address.remove(&self.address);
            }
        }
        drop(s);
        self.owner.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bounds_in_all_and_per_address() {
        let a = Admission::new(5, 2);
        let t1 = a.enter(ip("10.0.0.1")).unwrap();
        let _t2 = a.enter(ip("10.0.0.1")).unwrap();
        assert!(a.enter(ip("10.0.0.1")).is_none(), "per address");
        let _t3 = a.enter(ip("10.0.0.2")).unwrap();
        let _t4 = a.enter(ip("10.0.0.3")).unwrap();
        let _t5 = a.enter(ip("::1")).unwrap();
        assert!(a.enter(ip("10.0.0.9")).is_none(), "in all");
        assert_eq!(a.held(), 5);
        drop(t1);
        assert_eq!(a.held(), 4);
        assert!(
            a.enter(ip("10.0.0.1")).is_some(),
            "a place freed is taken again"
        );
    }

    #[tokio::test]
    async fn a_burst_waits_for_places_and_waiting_is_bounded() {
        let a = Admission::new(2, 1);
        let held = a.enter(ip("10.0.0.1")).unwrap();
        // A second connection from the address waits, and gets the place once it is given back.
        let waiter = {
            let a = a.clone();
            tokio::spawn(
                async move { a.enter_within(ip("10.0.0.1"), Duration::from_secs(5)).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiter.await.unwrap().is_some());
        // Nobody gives it back: refused at the deadline.
        let _t = a.enter(ip("10.0.0.2")).unwrap();
        let started = std::time::Instant::now();
        assert!(a
            .enter_within(ip("10.0.0.2"), Duration::from_millis(100))
            .await
            .is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
        // No more waiters than places: the rest are refused at once.
        let b = Admission::new(1, 1);
        let _h = b.enter(ip("10.0.0.3")).unwrap();
        let w = {
            let b = b.clone();
            tokio::spawn(
                async move { b.enter_within(ip("10.0.0.3"), Duration::from_secs(5)).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert!(b
            .enter_within(ip("10.0.0.3"), Duration::from_secs(5))
            .await
            .is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
        w.abort();
    }

    #[tokio::test]
    async fn a_few_addresses_cannot_keep_the_others_out() {
        let a = Admission::new(4, 4);
        let hog: Vec<Ticket> = (0..4).filter_map(|_| a.enter(ip("10.0.0.66"))).collect();
        assert_eq!(hog.len(), 4);
        let oldest = hog[0].eviction();
        // A newcomer from elsewhere: the hog's oldest place is asked back, then taken.
        let newcomer = {
            let a = a.clone();
            tokio::spawn(
                async move { a.enter_within(ip("10.0.0.7"), Duration::from_secs(5)).await },
            )
        };
        tokio::time::timeout(Duration::from_secs(1), oldest.notified())
            .await
            .expect("the oldest place is asked back");
        let mut hog = hog.into_iter();
        drop(hog.next());
        assert!(newcomer.await.unwrap().is_some());
        // Balanced addresses do not take from each other.
        let b = Admission::new(2, 2);
        let t1 = b.enter(ip("10.0.0.1")).unwrap();
        let _t2 = b.enter(ip("10.0.0.2")).unwrap();
        assert!(b.enter(ip("10.0.0.3")).is_none());
        let asked = t1.eviction();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), asked.notified())
                .await
                .is_err(),
            "one place each: nobody gives up theirs"
        );
    }

    #[test]
    fn places_come_back() {
        let a = Admission::new(3, 3);
        for _ in 0..100 {
            let t: Vec<Ticket> = (0..3).filter_map(|_| a.enter(ip("127.0.0.1"))).collect();
            assert_eq!(t.len(), 3);
            assert!(a.enter(ip("127.0.0.1")).is_none());
        }
        assert_eq!(a.held(), 0);
        assert!(a.state.lock().unwrap().by_address.is_empty());
    }
}
