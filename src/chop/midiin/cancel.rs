//! Code of ours that runs on threads which others may cancel (`pthread_cancel`): libjack's
//! threads, which it cancels asynchronously when a client is closed (see `jack.rs`).

use std::ffi::c_int;

extern "C" {
    // Not in the libc crate for Linux; POSIX, and async-cancel-safe.
    fn pthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int;
}

/// glibc's value (`<pthread.h>`).
const PTHREAD_CANCEL_DISABLE: c_int = 1;

/// Runs `f` with cancellation of this thread disabled. A cancel requested meanwhile takes effect
/// as the old state is restored, here, where nothing of `f` is left to clean up (hence
/// `R: Copy`: no destructor is pending). `f` must not block: whoever cancels the thread usually
/// waits for it to end.
#[cfg_attr(not(feature = "jack"), allow(dead_code))]
pub fn uncancellable<R: Copy>(f: impl FnOnce() -> R) -> R {
    let mut old: c_int = 0;
    // SAFETY: plain calls on the current thread with a valid out-parameter.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
    let r = f();
    // SAFETY: as above; restores what the thread had.
    unsafe { pthread_setcancelstate(old, &mut old) };
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_void;
    use std::ptr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    extern "C" {
        fn pthread_setcanceltype(kind: c_int, old: *mut c_int) -> c_int;
    }
    /// glibc's values (`<pthread.h>`).
    const PTHREAD_CANCEL_ASYNCHRONOUS: c_int = 1;
    const PTHREAD_CANCELED: *mut c_void = -1isize as *mut c_void;

    /// What the test thread shares with the test: a counter it raises on entering its
    /// "callback" and lowers on leaving it, and the handshake around the cancel.
    #[derive(Default)]
    struct Probe {
        inside: AtomicUsize,
        entered: AtomicBool,
        cancel_sent: AtomicBool,
        returned: AtomicBool,
        guarded: bool,
    }

    /// A thread as libjack makes them (asynchronous cancellation) running one callback body,
    /// with or without `uncancellable`. Unguarded, the body never ends on its own: only the
    /// cancel ends it.
    extern "C" fn libjack_like_thread(arg: *mut c_void) -> *mut c_void {
        // SAFETY: `arg` is the test's `Probe`, alive until after the join.
        let probe = unsafe { &*(arg as *const Probe) };
        // SAFETY: a plain call on the current thread.
        unsafe { pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, ptr::null_mut()) };
        let body = || {
            probe.inside.fetch_add(1, Ordering::SeqCst);
            probe.entered.store(true, Ordering::SeqCst);
            while !(probe.guarded && probe.cancel_sent.load(Ordering::SeqCst)) {
                std::hint::spin_loop();
            }
            probe.inside.fetch_sub(1, Ordering::SeqCst);
        };
        if probe.guarded {
            uncancellable(body);
        } else {
            body();
        }
        probe.returned.store(true, Ordering::SeqCst);
        ptr::null_mut()
    }

    /// Starts the thread, cancels it while it is inside the body, and returns what it left.
    fn cancel_inside(guarded: bool) -> (usize, bool) {
        let probe = Probe {
            guarded,
            ..Probe::default()
        };
        let arg = &probe as *const Probe as *mut c_void;
        let mut t: libc::pthread_t = 0;
        // SAFETY: a thread over `probe`, which outlives it (joined below).
        assert_eq!(
            unsafe { libc::pthread_create(&mut t, ptr::null(), libjack_like_thread, arg) },
            0
        );
        while !probe.entered.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        let mut status = ptr::null_mut();
        // SAFETY: `t` is the thread started above, joined once.
        unsafe {
            assert_eq!(libc::pthread_cancel(t), 0);
            probe.cancel_sent.store(true, Ordering::SeqCst);
            assert_eq!(libc::pthread_join(t, &mut status), 0);
        }
        assert_eq!(status, PTHREAD_CANCELED, "the thread ends by the cancel");
        assert!(!probe.returned.load(Ordering::SeqCst));
        (
            probe.inside.load(Ordering::SeqCst),
            probe.entered.load(Ordering::SeqCst),
        )
    }

    /// What broke: libjack cancels its threads asynchronously when a client is closed (after
    /// the JACK server died, say), and a callback of ours cut off half way left state half
    /// changed (a queue slot claimed and never filled stalled the cook thread). Unguarded the
    /// body is cut off inside; `uncancellable` lets it finish and the cancel then takes effect.
    #[test]
    fn a_jack_thread_cancelled_inside_a_callback_finishes_the_callback_first() {
        assert_eq!(cancel_inside(false), (1, true), "unguarded: cut off inside the body");
        assert_eq!(cancel_inside(true), (0, true), "guarded: the body finished");
    }
}
