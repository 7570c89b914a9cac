//! Wakes the cook thread when input arrives between frames (`react = true`, docs/react.md).
//!
//! Two ways in:
//! - **The doorbell.** Any receive thread (OSC over TCP, a UDP receive thread, MIDI) holds a
//!   clone and calls [`Wake::notify`] after it queued something. Notifies coalesce: however many
//!   arrive while one is pending, the sleeper is woken once and drains everything.
//! - **Sockets handed over.** A UDP receiver registers its socket as a [`Source`]. While the
//!   cook thread listens, it asks for every source ([`Wake::take_sources`]); the receive thread
//!   hands its socket over between two batches and parks, and from then on the cook thread
//!   watches the socket itself and reads it when it wakes: one thread wake-up per burst instead
//!   of two (receive thread, then cook thread). [`Wake::give_back`] returns the sockets to their
//!   threads (a flood past the reaction budget, `react` turned off), and a receive thread takes
//!   its socket back by itself when the cook thread has neither watched nor read it for
//!   [`STALL`] (a long frame, a slow script): what arrives meanwhile then goes to its queue, not
//!   into the kernel's buffer until that overflows.
//!
//! The cook thread sleeps in [`Wake::sleep`]: `poll(2)` on an eventfd (the doorbell) and the
//! sockets it holds, until its next deadline or the first of them. No polling loop, no spinning.
//!
//! Knows nothing of operators or OSC.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{Thread, ThreadId};
use std::time::{Duration, Instant};

/// One cook thread's doorbell and the sockets it may hold, shared by every receiver that feeds
/// it.
#[derive(Clone, Debug)]
pub struct Wake(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Something was queued since the cook thread last looked.
    pending: AtomicBool,
    /// The sleeper is in (or about to enter) `poll`: a notify must write the eventfd.
    sleeping: AtomicBool,
    /// The doorbell's eventfd; `None` only when the kernel refused one (out of descriptors):
    /// then sleeps only see input when they end.
    bell: Option<OwnedFd>,
    /// The one thread that sleeps here (the first caller of `sleep`).
    waiter: OnceLock<ThreadId>,
    /// Times a notify actually had to wake the sleeper (a syscall); the rest coalesced.
    wakeups: AtomicU64,
    sources: Mutex<Vec<Weak<Source>>>,
    /// The sleeper's poll set, kept between sleeps (only the sleeper locks it).
    poll: Mutex<PollSet>,
    /// When the sleeper last left a sleep or finished reading a socket it holds (µs since
    /// `base`).
    woke: AtomicU64,
    /// A read since the cook thread last asked ([`Wake::take_crowded`]) took more than one
    /// datagram from a socket: input comes faster than the cook thread reads it.
    crowded: AtomicBool,
    base: Instant,
}

/// How long the cook thread may hold a socket without watching or reading it before its
/// receive thread takes it back (the receive thread looks each time its park ends, every
/// 50 ms for OSC In: taken back within 20–70 ms). Far below what a 4 MiB receive buffer
/// holds at tens of thousands of messages a second, far above a frame or a reaction pass.
pub const STALL: Duration = Duration::from_millis(20);

impl Default for Wake {
    fn default() -> Self {
        Wake::new()
    }
}

/// Who reads a [`Source`]'s socket. Until its operator has cooked once, only its receive
/// thread (a reaction does not cook an operator before its first frame, so the cook thread
/// would wake for datagrams nobody reads).
const UNARMED: u8 = 3;
/// Its receive thread.
const THREAD: u8 = 0;
/// The cook thread asked for it; its receive thread hands it over after the batch in hand.
const WANTED: u8 = 1;
/// The cook thread: it watches the socket while it sleeps and reads it when it cooks.
const COOK: u8 = 2;
/// The cook thread is reading it (its receive thread does not take it back meanwhile).
const READING: u8 = 4;

/// What one sleep polls: the doorbell, then the sockets the cook thread holds.
#[derive(Debug, Default)]
struct PollSet {
    fds: Vec<libc::pollfd>,
    /// The source of each of `fds[1..]`; emptied after every sleep, so a dropped source is
    /// not kept alive.
    held: Vec<Arc<Source>>,
}

// SAFETY: a pollfd is plain data (a descriptor number and two flag words).
unsafe impl Send for PollSet {}

/// A socket its receive thread can hand to the cook thread (see the module's text).
#[derive(Debug)]
pub struct Source {
    fd: RawFd,
    state: AtomicU8,
    /// The last sleep polled the socket and it had nothing to read: the next look may skip
    /// it (see [`Source::take_quiet`]). Only the cook thread touches it.
    quiet: AtomicBool,
    /// The receive thread, unparked when the socket comes back to it.
    reader: OnceLock<Thread>,
    /// The cook thread's side: rung at a handover, asked whether it stalled, told about every
    /// read. (The wake holds its sources weakly, so this is no cycle.)
    wake: Wake,
}

impl Source {
    /// Whether the receive thread may read now. Called by it before every receive: hands the
    /// socket over when the cook thread asked for it (ringing its wake so the sleeper starts
    /// watching it), and says no while the cook thread holds it (the thread then parks in
    /// [`Source::park`]).
    pub fn thread_may_read(&self) -> bool {
        let _ = self.reader.get_or_init(std::thread::current);
        match self.state.load(Acquire) {
            THREAD | UNARMED => true,
            WANTED => {
                if self
                    .state
                    .compare_exchange(WANTED, COOK, AcqRel, Acquire)
                    .is_ok()
                {
                    self.wake.notify();
                }
                false
            }
            _ => false,
        }
    }

    /// Parks the receive thread while the cook thread holds the socket, for at most `nap`;
    /// then takes the socket back if the cook thread has been away from it for [`STALL`].
    pub fn park(&self, nap: Duration) {
        // While the cook thread reads, the socket is held too: sleep, do not spin.
        if matches!(self.state.load(Acquire), COOK | READING) {
            std::thread::park_timeout(nap);
            if self.wake.stalled() {
                let _ = self.state.compare_exchange(COOK, THREAD, AcqRel, Acquire);
            }
        }
    }

    /// The operator cooked: the cook thread may take the socket from now on.
    pub fn arm(&self) {
        let _ = self
            .state
            .compare_exchange(UNARMED, THREAD, AcqRel, Acquire);
    }

    /// Wakes a parked receive thread (it is stopping).
    pub fn unpark(&self) {
        if let Some(t) = self.reader.get() {
            t.unpark();
        }
    }

    /// Whether the cook thread holds the socket (and must read it itself).
    pub fn held_by_cook(&self) -> bool {
        matches!(self.state.load(Acquire), COOK | READING)
    }

    /// The cook thread starts reading the socket: false when it does not hold it (any more).
    /// Until [`Source::end_read`] the receive thread cannot take it back, so no datagram it
    /// reads can overtake one the cook thread took.
    pub fn begin_read(&self) -> bool {
        self.state
            .compare_exchange(COOK, READING, AcqRel, Acquire)
            .is_ok()
    }

    /// The cook thread read `taken` datagrams. A read attends the socket as a sleep on it does
    /// (no [`STALL`] while the cook thread keeps reading without sleeping), and more than one
    /// datagram says the cook thread is crowded ([`Wake::take_crowded`]).
    pub fn end_read(&self, taken: usize) {
        let w = &self.wake.0;
        w.woke.store(w.base.elapsed().as_micros() as u64, Relaxed);
        if taken > 1 {
            w.crowded.store(true, Relaxed);
        }
        let _ = self.state.compare_exchange(READING, COOK, AcqRel, Acquire);
    }

    /// Whether the sleep just ended saw this socket empty (consumed: true at most once per
    /// sleep). A datagram that came after it is seen by the next sleep, which then returns at
    /// once, so skipping the read costs it no more than a reaction's delay.
    pub fn take_quiet(&self) -> bool {
        self.quiet.swap(false, Relaxed)
    }
}

impl Wake {
    pub fn new() -> Wake {
        // SAFETY: eventfd takes plain flags and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        let bell = if fd >= 0 {
            // SAFETY: `fd` is a new descriptor nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            tracing::warn!(
                "no eventfd ({}): input between frames waits for the next frame",
                std::io::Error::last_os_error()
            );
            None
        };
        Wake(Arc::new(Inner {
            pending: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            bell,
            waiter: OnceLock::new(),
            wakeups: AtomicU64::new(0),
            sources: Mutex::new(Vec::new()),
            poll: Mutex::new(PollSet::default()),
            woke: AtomicU64::new(0),
            crowded: AtomicBool::new(false),
            base: Instant::now(),
        }))
    }

    /// Says there is new input. Cheap when a notify is already pending (one atomic swap) or
    /// when nobody sleeps here (the daemon runs in frame mode): then it only sets the flag.
    pub fn notify(&self) {
        if !self.0.pending.swap(true, SeqCst) && self.0.sleeping.load(SeqCst) {
            if let Some(bell) = &self.0.bell {
                self.0.wakeups.fetch_add(1, Relaxed);
                let one: u64 = 1;
                // SAFETY: writes 8 bytes from a live u64 to our eventfd. It cannot block (the
                // fd is non-blocking); a full counter (never, at 2^64 - 2) just fails.
                unsafe { libc::write(bell.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
        }
    }

    /// Registers a socket (`fd`, which must stay open while the returned source lives) that its
    /// receive thread reads until the cook thread asks for it. Dropping the source unregisters.
    pub fn source(&self, fd: RawFd) -> Arc<Source> {
        let s = Arc::new(Source {
            fd,
            state: AtomicU8::new(UNARMED),
            quiet: AtomicBool::new(false),
            reader: OnceLock::new(),
            wake: self.clone(),
        });
        let mut all = self.0.sources.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&s));
        s
    }

    /// Asks every receive thread for its socket (the cook thread is going to listen). Each hands
    /// it over after the batch in hand, and rings when it did.
    pub fn take_sources(&self) {
        self.each_source(|s| {
            let _ = s.state.compare_exchange(THREAD, WANTED, AcqRel, Acquire);
        });
    }

    /// Gives every socket back to its receive thread (and wakes the thread).
    pub fn give_back(&self) {
        self.each_source(|s| {
            // One step: a receive thread handing over (WANTED → COOK) between two steps would
            // leave the socket with a cook thread that no longer watches it.
            let back = s.state.fetch_update(AcqRel, Acquire, |st| {
                matches!(st, COOK | WANTED).then_some(THREAD)
            });
            if back == Ok(COOK) {
                s.unpark();
            }
        });
    }

    /// Whether the sleeper has been away from its sockets for [`STALL`]: not asleep on them,
    /// and out of its last sleep that long ago.
    fn stalled(&self) -> bool {
        let now = self.0.base.elapsed().as_micros() as u64;
        !self.0.sleeping.load(SeqCst)
            && now.saturating_sub(self.0.woke.load(Relaxed)) > STALL.as_micros() as u64
    }

    fn each_source(&self, mut f: impl FnMut(Arc<Source>)) {
        let all = self.0.sources.lock().unwrap_or_else(|e| e.into_inner());
        for s in all.iter().filter_map(Weak::upgrade) {
            f(s);
        }
    }

    /// Sleeps for at most `nap` on the calling thread, returning early with `true` at the first
    /// notify or datagram on a socket the cook thread holds (or at once when a notify is already
    /// pending, which is consumed). `false`: the nap ended with nothing new. Only one thread may
    /// ever sleep on a `Wake` (the first caller); another thread calling it only sleeps `nap`
    /// and never sees input.
    pub fn sleep(&self, nap: Duration) -> bool {
        let me = *self.0.waiter.get_or_init(|| std::thread::current().id());
        let Some(bell) = self
            .0
            .bell
            .as_ref()
            .filter(|_| me == std::thread::current().id())
        else {
            std::thread::sleep(nap);
            return false;
        };
        let mut set = self.0.poll.lock().unwrap_or_else(|e| e.into_inner());
        let PollSet { fds, held } = &mut *set;
        fds.clear();
        fds.push(libc::pollfd {
            fd: bell.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        self.each_source(|s| {
            if s.held_by_cook() {
                s.quiet.store(false, Relaxed);
                fds.push(libc::pollfd {
                    fd: s.fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                held.push(s);
            }
        });
        let until = Instant::now() + nap;
        self.0.sleeping.store(true, SeqCst);
        let input = loop {
            if self.0.pending.swap(false, SeqCst) {
                break true;
            }
            let now = Instant::now();
            if now >= until {
                break false;
            }
            let ts = timespec(until - now);
            // SAFETY: `fds` is a live array of `fds.len()` pollfds; `ts` outlives the call.
            let r = unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    &ts,
                    std::ptr::null(),
                )
            };
            for (f, s) in fds[1..].iter().zip(held.iter()) {
                s.quiet.store(r >= 0 && f.revents == 0, Relaxed);
            }
            if r > 0 {
                if fds[0].revents != 0 {
                    let mut n: u64 = 0;
                    // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
                    unsafe { libc::read(bell.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
                }
                if fds[1..].iter().any(|f| f.revents != 0) {
                    // Consumed here; a notify that came meanwhile is seen by the next look.
                    self.0.pending.store(false, SeqCst);
                    break true;
                }
            }
            // A notify (the flag says so at the loop's top), a signal, or the time is up.
        };
        held.clear();
        drop(set);
        self.0
            .woke
            .store(self.0.base.elapsed().as_micros() as u64, Relaxed);
        self.0.sleeping.store(false, SeqCst);
        input
    }

    /// Forgets a pending notify (the cook thread is about to drain every queue anyway).
    pub fn clear(&self) {
        self.0.pending.store(false, Release);
    }

    /// Whether a read since the last call took more than one datagram from a socket (consumed).
    /// Then input is arriving faster than the cook thread reads it, and the next read will
    /// most likely find some more: there is no need to sleep on the sockets to hear so.
    pub fn take_crowded(&self) -> bool {
        self.0.crowded.swap(false, Relaxed)
    }

    /// Notifies that had to wake the sleeping thread, in all.
    pub fn wakeups(&self) -> u64 {
        self.0.wakeups.load(Relaxed)
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

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
        let t = std::thread::spawn(move || {
            // Until the sleeper is in poll, a notify only sets the flag (also correct).
            while !other.0.sleeping.load(SeqCst) {
                std::thread::yield_now();
            }
            other.notify()
        });
        // Ends by the notify long before the hour is up.
        assert!(w.sleep(Duration::from_secs(3600)));
        t.join().unwrap();
        assert_eq!(w.wakeups(), 1);
    }

    #[test]
    fn notifies_coalesce_until_the_sleeper_looks() {
        let w = Wake::new();
        w.0.sleeping.store(true, SeqCst);
        for _ in 0..1000 {
            w.notify();
        }
        assert_eq!(w.wakeups(), 1);
        w.0.sleeping.store(false, SeqCst);
        assert!(w.sleep(Duration::ZERO));
        w.notify();
        // Nobody slept: no write.
        assert_eq!(w.wakeups(), 1);
        w.clear();
        assert!(!w.sleep(Duration::ZERO));
    }

    #[test]
    fn a_read_of_more_than_one_datagram_says_crowded_once() {
        let w = Wake::new();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = w.source(rx.as_raw_fd());
        assert!(!w.take_crowded());
        s.end_read(1);
        assert!(!w.take_crowded(), "one datagram is not crowded");
        s.end_read(2);
        s.end_read(0);
        assert!(
            w.take_crowded(),
            "a later quiet read does not hide a crowded one"
        );
        assert!(!w.take_crowded(), "consumed");
    }

    /// The handover: the receive thread yields its socket between batches and rings; the cook
    /// thread then wakes on a datagram itself; `give_back` returns the socket.
    #[test]
    fn a_socket_handed_over_wakes_the_sleeper_itself_and_comes_back() {
        let w = Wake::new();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = w.source(rx.as_raw_fd());
        // Not before its operator cooked once.
        w.take_sources();
        assert!(s.thread_may_read());
        s.arm();
        w.take_sources();
        // The receive thread's next look hands it over and rings.
        assert!(!s.thread_may_read());
        assert!(s.held_by_cook());
        assert!(w.sleep(Duration::ZERO));
        // Nothing on the socket: the sleep runs out, and says the socket was empty (once).
        assert!(!w.sleep(Duration::from_millis(5)));
        assert!(s.take_quiet());
        assert!(!s.take_quiet());
        // A sleep that a pending doorbell ends before it polls says nothing of the socket: the
        // quiet of the sleep before it is not kept.
        assert!(!w.sleep(Duration::from_millis(5)));
        w.notify();
        assert!(w.sleep(Duration::from_secs(3600)));
        assert!(!s.take_quiet());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        assert!(w.sleep(Duration::from_secs(3600)));
        assert!(!s.take_quiet());
        // The datagram is still there for the cook side to read.
        let mut buf = [0u8; 4];
        assert_eq!(rx.recv(&mut buf).unwrap(), 1);
        w.give_back();
        assert!(!s.held_by_cook());
        assert!(s.thread_may_read());
        // Held but neither watched nor read for longer than STALL: its receive thread takes it
        // back; while the cook thread reads, it does not.
        w.take_sources();
        assert!(!s.thread_may_read());
        assert!(w.sleep(Duration::ZERO));
        assert!(s.begin_read());
        std::thread::sleep(STALL * 2);
        s.park(Duration::ZERO);
        assert!(s.held_by_cook(), "taken back while the cook thread read");
        // A read attends the socket as a sleep does: not taken back until STALL after it.
        s.end_read(1);
        s.park(Duration::ZERO);
        assert!(s.held_by_cook(), "taken back just after a read");
        std::thread::sleep(STALL * 2);
        s.park(Duration::ZERO);
        assert!(!s.held_by_cook());
        assert!(!s.begin_read());
        assert!(s.thread_may_read());
        // A source dropped is forgotten.
        drop(s);
        w.take_sources();
        assert!(w
            .0
            .sources
            .lock()
            .unwrap()
            .iter()
            .all(|x| x.upgrade().is_none()));
    }
}
