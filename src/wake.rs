//! Wakes the cook thread when input arrives between frames (`react = true`, docs/react.md).
//!
//! Any receive thread (OSC over UDP, another transport, MIDI) holds a clone and calls
//! [`Wake::notify`] after it queued something; the cook thread sleeps in [`Wake::sleep`] until its
//! next deadline or the first notify, whichever comes first. Built on the standard library's
//! thread parking (a futex on Linux): no polling, no spinning, and notifies coalesce: however many
//! packets arrive while one is pending, the cook thread is woken once and drains them all.
//!
//! Knows nothing of operators or sockets.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// One cook thread's doorbell, shared by every receiver that feeds it.
#[derive(Clone, Default, Debug)]
pub struct Wake(Arc<Inner>);

#[derive(Default, Debug)]
struct Inner {
    /// Something was queued since the cook thread last looked.
    pending: AtomicBool,
    /// The sleeping side, once it said it sleeps here.
    waiter: OnceLock<Thread>,
    /// Times a notify actually had to wake the sleeper (a syscall); the rest coalesced.
    wakeups: AtomicU64,
}

impl Wake {
    pub fn new() -> Wake {
        Wake::default()
    }

    /// Says there is new input. Cheap when a notify is already pending (one atomic swap) or
    /// when nobody sleeps here (the daemon runs in frame mode): then it only sets the flag.
    pub fn notify(&self) {
        if !self.0.pending.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.0.waiter.get() {
                self.0.wakeups.fetch_add(1, Ordering::Relaxed);
                t.unpark();
            }
        }
    }

    /// Sleeps for at most `nap` on the calling thread, returning early with `true` at the first
    /// notify (or at once when one is already pending, which is consumed). `false`: the nap
    /// ended with nothing new. Only one thread may ever sleep on a `Wake` (the first caller);
    /// another thread calling it only sleeps `nap` and never sees a notify.
    pub fn sleep(&self, nap: Duration) -> bool {
        let me = self.0.waiter.get_or_init(std::thread::current);
        if me.id() != std::thread::current().id() {
            std::thread::sleep(nap);
            return false;
        }
        let until = Instant::now() + nap;
        loop {
            if self.0.pending.swap(false, Ordering::AcqRel) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            // Parking returns early on an unpark or spuriously; the flag says which.
            std::thread::park_timeout(until - now);
        }
    }

    /// Forgets a pending notify (the cook thread is about to drain every queue anyway).
    pub fn clear(&self) {
        self.0.pending.store(false, Ordering::Release);
    }

    /// Notifies that had to wake the sleeping thread, in all.
    pub fn wakeups(&self) -> u64 {
        self.0.wakeups.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_notify_ends_the_next_sleep_at_once_and_is_consumed() {
        let w = Wake::new();
        w.notify();
        w.notify();
        assert!(w.sleep(Duration::from_secs(60)));
        // Consumed: the next sleep runs out.
        assert!(!w.sleep(Duration::from_millis(1)));
    }

    #[test]
    fn a_notify_from_another_thread_wakes_the_sleeper() {
        let w = Wake::new();
        // Registers this thread as the sleeper.
        assert!(!w.sleep(Duration::ZERO));
        let other = w.clone();
        let t = std::thread::spawn(move || other.notify());
        // Ends by the notify long before the hour is up.
        assert!(w.sleep(Duration::from_secs(3600)));
        t.join().unwrap();
        assert_eq!(w.wakeups(), 1);
    }

    #[test]
    fn notifies_coalesce_until_the_sleeper_looks() {
        let w = Wake::new();
        assert!(!w.sleep(Duration::ZERO));
        for _ in 0..1000 {
            w.notify();
        }
        assert_eq!(w.wakeups(), 1);
        assert!(w.sleep(Duration::ZERO));
        w.notify();
        assert_eq!(w.wakeups(), 2);
        w.clear();
        assert!(!w.sleep(Duration::ZERO));
    }
}
