//! Admission of connections that have not logged in yet: a bound on how many there are in all and
//! per source address, so idle or slow sockets cannot take every descriptor of the process (which
//! the REST API and logged-in clients share).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct Admission {
    total_max: usize,
    per_address_max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A place held until dropped (the login finished, or the connection ended).
#[derive(Debug)]
pub struct Ticket {
    owner: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    pub fn new(total_max: usize, per_address_max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            total_max: total_max.max(1),
            per_address_max: per_address_max.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// A place for a connection from `address`, unless the bounds are reached.
    pub fn enter(self: &Arc<Self>, address: IpAddr) -> Option<Ticket> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let here = s.by_address.get(&address).copied().unwrap_or(0);
        if s.total >= self.total_max || here >= self.per_address_max {
            return None;
        }
        s.total += 1;
        s.by_address.insert(address, here + 1);
        Some(Ticket {
            owner: self.clone(),
            address,
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
        if let Some(n) = s.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                s.by_address.remove(&self.address);
            }
        }
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
