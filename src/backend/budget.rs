//! A tablet's connection budget: how many lean connections one shardgate
//! has open to it, and who waits for one. A proxy's point is to serve
//! many clients over fewer database connections (vttablet's pools cap
//! them): without a bound, a burst of clients would open a tablet
//! connection each and meet MariaDB's `max_connections` (151 by default)
//! as "Too many connections". With one, a statement beyond the cap waits
//! for a connection another statement gives back, and fails with a
//! clear error only after `--tablet-connection-wait-ms`.
//!
//! Connections kept while nothing runs on them (a session's sticky ones,
//! the shared read connections) may hold at most half the budget, so the
//! other half always turns over between statements: an idle client never
//! holds up a busy one for good. Open transactions hold theirs, as in
//! vttablet's transaction pool.
//!
//! The budget never locks the pools' idle lists: the pools take their
//! lock first and this one inside it, and a [`Slot`] dropped anywhere
//! (a connection closed) takes only this one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// What a waiter is given: a connection someone put back, or room to
/// open one.
pub enum Grant<T> {
    /// An idle connection, handed over as it was put back.
    Conn(T),
    /// Room for one more connection.
    Slot(Slot<T>),
}

/// One tablet's budget, shared by every connection open to it.
pub struct Budget<T> {
    cap: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Connections open (or being opened).
    open: usize,
    /// Of those, how many are kept while idle (see [`Kept`]).
    kept: usize,
    waiters: VecDeque<oneshot::Sender<Grant<T>>>,
}

impl<T> State<T> {
    /// Forgets the waiters that gave up (timed out, or their statement
    /// was dropped), so the queue does not grow with them.
    fn prune(&mut self) {
        self.waiters.retain(|w| !w.is_closed());
    }
}

/// One open connection's share of the budget, given back when dropped
/// (the connection closed), to a waiter first.
pub struct Slot<T>(Arc<Budget<T>>);

/// A connection's place in the kept half of the budget; given back when
/// dropped.
pub struct Kept<T>(Arc<Budget<T>>);

/// What [`Budget::reserve`] found.
pub enum Reserve<T> {
    /// Room to open a connection.
    Slot(Slot<T>),
    /// None: the answer comes here.
    Wait(oneshot::Receiver<Grant<T>>),
}

impl<T> Budget<T> {
    /// A budget of `cap` connections (at least one).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Budget {
            cap: cap.max(1),
            state: Mutex::new(State {
                open: 0,
                kept: 0,
                waiters: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Room for a connection if there is some, else (with `wait`) a place
    /// in the queue of waiters; None when full and not waiting.
    pub fn reserve(self: &Arc<Self>, wait: bool) -> Option<Reserve<T>> {
        let mut s = self.lock();
        if s.open < self.cap {
            s.open += 1;
            return Some(Reserve::Slot(Slot(self.clone())));
        }
        if !wait {
            return None;
        }
        s.prune();
        let (tx, rx) = oneshot::channel();
        s.waiters.push_back(tx);
        Some(Reserve::Wait(rx))
    }

    /// Someone still waits for a connection (what the tests look at;
    /// [`Budget::hand_over`] finds out by trying).
    #[cfg(test)]
    fn has_waiters(&self) -> bool {
        let mut s = self.lock();
        s.prune();
        !s.waiters.is_empty()
    }

    /// Gives an idle connection to the first waiter still waiting; back
    /// when there is none.
    pub fn hand_over(&self, mut conn: T) -> Result<(), T> {
        loop {
            let Some(w) = self.lock().waiters.pop_front() else {
                return Err(conn);
            };
            match w.send(Grant::Conn(conn)) {
                Ok(()) => return Ok(()),
                Err(Grant::Conn(c)) => conn = c,
                Err(Grant::Slot(_)) => unreachable!("sent a connection"),
            }
        }
    }

    /// A place in the kept half of the budget, if there is one left.
    pub fn keep(self: &Arc<Self>) -> Option<Kept<T>> {
        let mut s = self.lock();
        (s.kept < (self.cap / 2).max(1)).then(|| {
            s.kept += 1;
            Kept(self.clone())
        })
    }
}

impl<T> Slot<T> {
    /// The budget it belongs to.
    pub fn budget(&self) -> &Arc<Budget<T>> {
        &self.0
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        // The room goes to the first waiter still waiting; a waiter gone
        // since it was found drops the new slot, which comes back here.
        let waiter = {
            let mut s = self.0.lock();
            s.prune();
            match s.waiters.pop_front() {
                Some(w) => w,
                None => {
                    s.open -= 1;
                    return;
                }
            }
        };
        let _ = waiter.send(Grant::Slot(Slot(self.0.clone())));
    }
}

impl<T> Drop for Kept<T> {
    fn drop(&mut self) {
        self.0.lock().kept -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{Budget, Grant, Reserve};

    fn slot(b: &std::sync::Arc<Budget<u32>>) -> super::Slot<u32> {
        match b.reserve(false) {
            Some(Reserve::Slot(s)) => s,
            _ => panic!("no room"),
        }
    }

    /// The cap holds; without waiting a full budget says no, and a
    /// closed connection makes room again.
    #[test]
    fn the_cap_holds_and_closing_makes_room() {
        let b = Budget::<u32>::new(2);
        let (one, _two) = (slot(&b), slot(&b));
        assert_eq!(b.open(), 2);
        assert!(b.reserve(false).is_none());
        drop(one);
        assert_eq!(b.open(), 1);
        let _three = slot(&b);
        assert_eq!(b.open(), 2);
    }

    /// Waiters are served in order: a connection put back goes to the
    /// first, a connection closed makes room for the next; a waiter that
    /// gave up is skipped and its share not lost.
    #[test]
    fn waiters_get_connections_and_room_in_order() {
        let b = Budget::<u32>::new(1);
        let only = slot(&b);
        let wait = |b: &std::sync::Arc<Budget<u32>>| match b.reserve(true) {
            Some(Reserve::Wait(rx)) => rx,
            _ => panic!("should wait"),
        };
        let (gave_up, mut first, mut second) = (wait(&b), wait(&b), wait(&b));
        drop(gave_up);
        assert!(b.has_waiters());
        assert_eq!(b.hand_over(7).ok(), Some(()));
        assert!(matches!(first.try_recv(), Ok(Grant::Conn(7))));
        drop(only);
        let Ok(Grant::Slot(room)) = second.try_recv() else {
            panic!("the second waiter gets the room");
        };
        assert_eq!(b.open(), 1, "the share passed on, not freed");
        assert!(!b.has_waiters());
        assert_eq!(b.hand_over(8).err(), Some(8), "nobody waits");
        // A waiter that leaves after being given room gives it back.
        let late = wait(&b);
        drop(room);
        drop(late);
        assert_eq!(b.open(), 0);
    }

    /// Idle-kept connections get half the budget (at least one).
    #[test]
    fn kept_connections_get_half() {
        let b = Budget::<u32>::new(5);
        let kept: Vec<_> = (0..2).map(|_| b.keep().expect("room")).collect();
        assert!(b.keep().is_none());
        drop(kept);
        assert!(b.keep().is_some());
        let one = Budget::<u32>::new(1);
        let _k = one.keep().expect("one may be kept");
        assert!(one.keep().is_none());
    }
}
