//! The branch's gate: while a deploy step waits for a moment when no transaction holds the table it
//! changes, the front doors hold back new transactions for a short while, so the ones under way can
//! finish and leave that moment. Without it, clients that run transaction after transaction on the
//! table (sysbench's `oltp_read_write` at 4 threads) never leave it free, and the deploy waits for
//! the load to stop. A DDL is never queued behind them instead: a transaction that read the table
//! and then writes it would wait for the queued DDL, and the server would end the application's
//! transaction as a deadlock.
//!
//! A client is held at most [`GATE_WAIT_MAX`] at a closing ([`Gate::enter`]); a transaction under way is
//! held only at a closing of every statement ([`Gate::close_all`]), at most [`GATE_WAIT_ALL_MAX`].

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How long one closing of the gate lasts at most before it opens again for [`GATE_REST`].
pub const GATE_HOLD: Duration = Duration::from_millis(250);
/// How long the gate stays open between two closings while a step still waits.
pub const GATE_REST: Duration = Duration::from_millis(750);
/// The longest a client waits at a closed gate, whatever happens to its closer.
pub const GATE_WAIT_MAX: Duration = Duration::from_secs(1);

/// How long the gate stays open after a try of a DDL run alone found a table held (see
/// [`alone`]): the transaction holding it goes on and can finish. Without the rest, a
/// transaction whose next statement waited at the gate could hold the table for as long as the
/// step kept trying (seen: 21 s, until the transaction time limit ended it).
pub const ALONE_REST: Duration = Duration::from_millis(250);

/// The longest a statement waits at a closing of every statement (see [`Gate::close_all`]).
pub const GATE_WAIT_ALL_MAX: Duration = Duration::from_secs(5);

/// How long the gate remembers an instance connection a forced cut-over ended.
const ENDED_KEPT: Duration = Duration::from_secs(120);

/// One branch's gate: closed while any [`Closed`] of it lives. It also carries, from a forced
/// cut-over to the front doors, which instance connections the cut-over ended and for which
/// table, so their clients hear why.
#[derive(Debug)]
pub struct Gate {
    closers: watch::Sender<u32>,
    /// Closings that hold every statement, also inside transactions (see [`Gate::close_all`]).
    all: watch::Sender<u32>,
    /// Statements running on the branch through the front doors (see [`Gate::enter`]). An
    /// atomic, not a channel: it changes twice per statement, and only [`Gate::idle`] waits on
    /// it (`idle_waiters` say whether anyone does, `idled` wakes them).
    running: AtomicU32,
    idle_waiters: AtomicU32,
    idled: Notify,
    ended: std::sync::Mutex<Vec<Ended>>,
    /// When the last closing of every statement ended (see [`alone`]).
    all_opened: std::sync::Mutex<Option<Instant>>,
}

/// An instance connection a forced cut-over ended.
#[derive(Debug, Clone)]
struct Ended {
    thread_id: u64,
    table: String,
    marked: Instant,
    /// When the server had taken the `KILL` (a command sent after it never ran).
    killed: Option<Instant>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            closers: watch::channel(0).0,
            all: watch::channel(0).0,
            running: AtomicU32::new(0),
            idle_waiters: AtomicU32::new(0),
            idled: Notify::new(),
            ended: std::sync::Mutex::new(Vec::new()),
            all_opened: std::sync::Mutex::new(None),
        }
    }
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Closes the gate until the returned value is dropped.
    pub fn close(self: &Arc<Self>) -> Closed {
        self.closers.send_modify(|n| *n += 1);
        Closed {
            gate: self.clone(),
            since: Instant::now(),
        }
    }

    pub fn is_closed(&self) -> bool {
        *self.closers.borrow() > 0
    }

    /// Records that a forced cut-over is ending instance connection `thread_id` (of this branch's
    /// instance) because it held `table`.
    pub fn mark_ended(&self, thread_id: u64, table: &str) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.retain(|e| e.marked.elapsed() < ENDED_KEPT);
        ended.push(Ended {
            thread_id,
            table: table.to_string(),
            marked: Instant::now(),
            killed: None,
        });
    }

    /// Records that the server took the `KILL` of `thread_id`.
    pub fn mark_killed(&self, thread_id: u64) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = ended.iter_mut().find(|e| e.thread_id == thread_id) {
            e.killed.get_or_insert_with(Instant::now);
        }
    }

    /// The table a forced cut-over ended instance connection `thread_id` for, and when the server
    /// had taken its `KILL` (thread ids are not reused while a server runs).
    pub fn ended_for(&self, thread_id: u64) -> Option<(String, Option<Instant>)> {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended
            .iter()
            .find(|e| e.thread_id == thread_id && e.marked.elapsed() < ENDED_KEPT)
            .map(|e| (e.table.clone(), e.killed))
    }

    /// Closes the gate to every statement, also those of transactions under way, until the
    /// returned value is dropped: for a DDL that changes a foreign key's tables. MariaDB has
    /// such a DDL wait for the statements that have the related tables open (to reload their
    /// foreign keys) and, when one of them waits for the DDL's own lock in turn, ends the
    /// application's statement as a deadlock (1213); with nothing running there is no cycle.
    pub fn close_all(self: &Arc<Self>) -> ClosedAll {
        self.all.send_modify(|n| *n += 1);
        ClosedAll { gate: self.clone() }
    }

    /// Waits until no statement runs through the front doors, at most `max`; true when none does.
    pub async fn idle(&self, max: Duration) -> bool {
        self.idle_waiters.fetch_add(1, SeqCst);
        let until = tokio::time::Instant::now() + max;
        let idle = loop {
            // Registered before the count is read: a statement that ends after the read finds
            // this waiter and wakes it.
            let idled = self.idled.notified();
            tokio::pin!(idled);
            idled.as_mut().enable();
            if self.running.load(SeqCst) == 0 {
                break true;
            }
            if tokio::time::timeout_at(until, idled).await.is_err() {
                break self.running.load(SeqCst) == 0;
            }
        };
        self.idle_waiters.fetch_sub(1, SeqCst);
        idle
    }

    fn leave(&self) {
        if self.running.fetch_sub(1, SeqCst) == 1 && self.idle_waiters.load(SeqCst) > 0 {
            self.idled.notify_waiters();
        }
    }

    /// Before a statement: waits while the gate is closed to it (a new transaction, or a
    /// statement outside one, at any closing; one of a transaction under way only at a closing of
    /// every statement), at most `max`, and counts it as running until the returned value is
    /// dropped.
    pub async fn enter(self: &Arc<Self>, in_transaction: bool, max: Duration) -> Running {
        let start = tokio::time::Instant::now();
        loop {
            // Counted first, then the closings read: a closing of every statement that comes
            // after the count waits for this statement, one before it is seen here.
            self.running.fetch_add(1, SeqCst);
            let held_all = *self.all.borrow() > 0;
            let held = held_all || (!in_transaction && self.is_closed());
            // A closing of every statement lasts one swap (milliseconds); its bound is only
            // against a closer that never ends.
            let until = start + if held_all { GATE_WAIT_ALL_MAX } else { max };
            if !held || tokio::time::Instant::now() >= until {
                return Running { gate: self.clone() };
            }
            self.leave();
            let mut all = self.all.subscribe();
            let mut closers = self.closers.subscribe();
            let open = async {
                if in_transaction {
                    let _ = all.wait_for(|n| *n == 0).await;
                } else {
                    let _ = all.wait_for(|n| *n == 0).await;
                    let _ = closers.wait_for(|n| *n == 0).await;
                }
            };
            let _ = tokio::time::timeout_at(until, open).await;
        }
    }
}

/// A closing of a [`Gate`] to every statement (see [`Gate::close_all`]).
#[derive(Debug)]
pub struct ClosedAll {
    gate: Arc<Gate>,
}

impl Drop for ClosedAll {
    fn drop(&mut self) {
        let mut open = false;
        self.gate.all.send_modify(|n| {
            *n = n.saturating_sub(1);
            open = *n == 0;
        });
        if open {
            *self
                .gate
                .all_opened
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }
}

impl Gate {
    /// What is left of the rest after the last closing of every statement (see [`alone`]):
    /// nothing while one is in force (a closing nested in another holds nobody new).
    pub fn rest_left(&self) -> Duration {
        if *self.all.borrow() > 0 {
            return Duration::ZERO;
        }
        let opened = *self.all_opened.lock().unwrap_or_else(|e| e.into_inner());
        opened.map_or(Duration::ZERO, |t| ALONE_REST.saturating_sub(t.elapsed()))
    }
}

/// A statement running through a front door (see [`Gate::enter`]).
#[derive(Debug)]
pub struct Running {
    gate: Arc<Gate>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

/// A closing of a [`Gate`]; dropping it opens the gate (unless another closing holds it).
#[derive(Debug)]
pub struct Closed {
    gate: Arc<Gate>,
    since: Instant,
}

impl Closed {
    /// How long the gate has been closed by this closing.
    pub fn held(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for Closed {
    fn drop(&mut self) {
        self.gate.closers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

tokio::task_local! {
    /// Set while a deploy step changes tables of a foreign key: each of its DDL runs with the
    /// gate closed to every statement and nothing running (see [`Gate::close_all`]).
    pub static ALONE: bool;
}

/// In a step under [`ALONE`] with a gate: closes the gate to every statement and waits (at most
/// [`GATE_HOLD`]) until none runs; `Err` when some still does (the closing is then taken back,
/// so the transactions under way can go on). A closing comes at least [`ALONE_REST`] after the
/// last one ended: a step's DDL one after the other (a clean-up's drops) closed the gate back to
/// back, and a transaction under way was held at each of its statements in turn (1.3 s seen).
pub async fn alone() -> Result<Option<ClosedAll>, ()> {
    if !ALONE.try_with(|a| *a).unwrap_or(false) {
        return Ok(None);
    }
    let Ok(gate) = BRANCH_GATE.try_with(Arc::clone) else {
        return Ok(None);
    };
    let rest = gate.rest_left();
    if !rest.is_zero() {
        tokio::time::sleep(rest).await;
    }
    let closed = gate.close_all();
    if gate.idle(GATE_HOLD).await {
        Ok(Some(closed))
    } else {
        Err(())
    }
}

tokio::task_local! {
    /// The gate of the branch the current deploy step changes (set by the control plane around
    /// its steps; DDL without it simply waits for a free moment).
    pub static BRANCH_GATE: Arc<Gate>;
}

/// The gate's state while a step keeps trying a DDL: closed on the first failed try, opened again
/// after [`GATE_HOLD`] for [`GATE_REST`], and so on.
#[derive(Default)]
pub struct Closings {
    held: Option<Closed>,
    rest_until: Option<Instant>,
}

impl Closings {
    /// A try failed because the table was busy.
    pub fn busy(&mut self, gate: Option<&Arc<Gate>>) {
        let Some(gate) = gate else { return };
        let now = Instant::now();
        match &self.held {
            Some(c) if c.held() >= GATE_HOLD => {
                self.held = None;
                self.rest_until = Some(now + GATE_REST);
            }
            Some(_) => {}
            None if self.rest_until.is_none_or(|r| now >= r) => {
                self.held = Some(gate.close());
            }
            None => {}
        }
    }

    /// How long clients have been held by the current closing (zero when open).
    pub fn held(&self) -> Duration {
        self.held.as_ref().map_or(Duration::ZERO, Closed::held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closing_of_every_statement_waits_for_those_running_and_holds_the_rest() {
        let g = Gate::new();
        let running = g.enter(true, GATE_WAIT_MAX).await;
        let all = g.close_all();
        assert!(!g.idle(Duration::from_millis(50)).await, "one runs");
        drop(running);
        assert!(g.idle(Duration::from_millis(50)).await);
        // A statement of a transaction under way waits too, and is not counted while it waits.
        let g2 = g.clone();
        let held = tokio::spawn(async move {
            let started = Instant::now();
            let _r = g2.enter(true, Duration::from_secs(5)).await;
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(g.idle(Duration::from_millis(10)).await, "held, not running");
        drop(all);
        let waited = held.await.unwrap();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        // An ordinary closing holds new transactions only.
        let closed = g.close();
        let started = Instant::now();
        let _in_transaction = g.enter(true, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(closed);
    }

    /// Closings of every statement one after the other leave a rest between them, in which a
    /// transaction under way goes on; a closing inside another waits for nothing.
    #[tokio::test]
    async fn closings_of_every_statement_rest_between_them() {
        let g = Gate::new();
        assert_eq!(g.rest_left(), Duration::ZERO, "no closing yet");
        let first = g.close_all();
        let nested = g.close_all();
        assert_eq!(g.rest_left(), Duration::ZERO, "closed: nothing to wait for");
        drop(nested);
        assert_eq!(g.rest_left(), Duration::ZERO, "still closed by the first");
        drop(first);
        let rest = g.rest_left();
        assert!(
            rest > ALONE_REST - Duration::from_millis(50) && rest <= ALONE_REST,
            "{rest:?}"
        );
        let all = g.clone();
        let step = tokio::spawn(ALONE.scope(
            true,
            BRANCH_GATE.scope(all, async {
                let started = Instant::now();
                let closed = alone().await;
                (started.elapsed(), closed.map(|c| c.is_some()))
            }),
        ));
        // A transaction's next statement, right after the opening, is not held.
        let started = Instant::now();
        let _statement = g.enter(true, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_millis(50));
        drop(_statement);
        let (waited, closed) = step.await.unwrap();
        assert!(
            waited >= ALONE_REST - Duration::from_millis(60),
            "{waited:?}"
        );
        assert_eq!(closed, Ok(true));
    }

    /// A wait for the branch to be idle ends as the last statement running ends, on another
    /// thread too, not at its bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_for_idle_ends_when_the_last_statement_does() {
        let g = Gate::new();
        for _ in 0..200 {
            let (a, b) = (
                g.enter(true, GATE_WAIT_MAX).await,
                g.enter(false, GATE_WAIT_MAX).await,
            );
            let ender = tokio::spawn(async move {
                tokio::task::yield_now().await;
                drop(a);
                tokio::task::yield_now().await;
                drop(b);
            });
            let started = std::time::Instant::now();
            assert!(g.idle(Duration::from_secs(5)).await);
            assert!(started.elapsed() < Duration::from_secs(1));
            ender.await.unwrap();
        }
        let held = g.enter(true, GATE_WAIT_MAX).await;
        assert!(!g.idle(Duration::from_millis(20)).await, "one runs");
        drop(held);
        assert!(g.idle(Duration::from_millis(20)).await);
    }

    #[tokio::test]
    async fn clients_wait_while_closed_and_never_longer_than_the_bound() {
        let gate = Gate::new();
        drop(gate.enter(false, Duration::from_secs(5)).await);
        let closed = gate.close();
        let second = gate.close();
        assert!(gate.is_closed());
        let t0 = Instant::now();
        drop(gate.enter(false, Duration::from_millis(300)).await);
        assert!(t0.elapsed() >= Duration::from_millis(300));
        drop(closed);
        assert!(gate.is_closed(), "another closing still holds it");
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            let t0 = Instant::now();
            drop(g.enter(false, Duration::from_secs(5)).await);
            t0.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(40)).await;
        drop(second);
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(40) && waited < Duration::from_secs(1));
        assert!(!gate.is_closed());
    }

    #[test]
    fn ended_connections_are_remembered_for_a_while() {
        let gate = Gate::new();
        assert!(gate.ended_for(7).is_none());
        gate.mark_ended(7, "users");
        gate.mark_ended(8, "orders");
        gate.mark_killed(8);
        assert_eq!(gate.ended_for(7).map(|e| e.0).as_deref(), Some("users"));
        assert!(gate.ended_for(7).unwrap().1.is_none(), "not killed yet");
        assert!(gate.ended_for(8).unwrap().1.is_some());
        gate.ended.lock().unwrap()[0].marked -= ENDED_KEPT;
        assert!(gate.ended_for(7).is_none(), "forgotten after a while");
        gate.mark_ended(9, "t");
        assert_eq!(gate.ended.lock().unwrap().len(), 2, "old entries dropped");
    }

    #[test]
    fn closings_alternate_hold_and_rest() {
        let gate = Gate::new();
        let mut c = Closings::default();
        c.busy(None);
        assert!(!gate.is_closed(), "no gate, nothing closed");
        c.busy(Some(&gate));
        assert!(gate.is_closed());
        c.held = Some(Closed {
            gate: gate.clone(),
            since: Instant::now() - GATE_HOLD,
        });
        // The old closing is dropped with the assignment above: one closer now.
        c.busy(Some(&gate));
        assert!(!gate.is_closed(), "opened after the hold");
        c.busy(Some(&gate));
        assert!(!gate.is_closed(), "stays open for the rest");
        c.rest_until = Some(Instant::now());
        c.busy(Some(&gate));
        assert!(gate.is_closed(), "closed again");
        drop(c);
        assert!(!gate.is_closed(), "a step that ends opens it");
    }
}
