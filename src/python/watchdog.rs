//! Interrupting runaway callbacks: before each callback the cook thread arms a deadline; if the
//! callback is still running when it passes, a watchdog thread takes the GIL and raises
//! `CookBudgetExceeded` (a `BaseException`) inside it with `PyThreadState_SetAsyncExc`.
//!
//! Latency is the GIL switch interval (1 ms, set at start-up). A callback stuck in a blocking C
//! call (`time.sleep`) is interrupted when the call returns; a bare `except:` can swallow the
//! exception, so the cook thread treats a fired deadline as a failure whatever the callback did,
//! and clears an exception that fired but was not delivered so it cannot leak into the next
//! callback.
//!
//! Lock order is always GIL, then the state mutex (the cook thread arms and disarms with the GIL
//! held; the watchdog takes the GIL before it looks at the state to raise), so they cannot
//! deadlock, and the exception can only land in the callback that armed the deadline.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

struct Armed {
    token: u64,
    thread: std::os::raw::c_ulong,
    deadline: Instant,
    fired: bool,
}

struct State {
    /// Deadlines of the callbacks running now: one per thread running a callback (the daemon
    /// has one; parallel tests have several).
    armed: Vec<Armed>,
    next_token: u64,
    /// The watchdog is waiting without a deadline and must be woken by the next arm.
    idle: bool,
    /// The deadline the watchdog sleeps until; an earlier one must wake it.
    sleeping_until: Option<Instant>,
}

struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
}

static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();

fn watchdog() -> &'static Watchdog {
    WATCHDOG.get_or_init(|| {
        let w: &'static Watchdog = Box::leak(Box::new(Watchdog {
            state: Mutex::new(State {
                armed: Vec::new(),
                next_token: 1,
                idle: false,
                sleeping_until: None,
            }),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("chopd-py-watchdog".into())
            .spawn(move || run(w))
            // Failing to spawn a thread at start-up leaves nothing sensible to do.
            .expect("spawn the python watchdog thread");
        w
    })
}

fn lock(w: &Watchdog) -> std::sync::MutexGuard<'_, State> {
    // Nothing panics while holding the lock; recover the data if it ever did.
    w.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(w: &'static Watchdog) {
    let mut st = lock(w);
    loop {
        let due = st
            .armed
            .iter()
            .filter(|a| !a.fired)
            .min_by_key(|a| a.deadline)
            .map(|a| (a.token, a.deadline));
        match due {
            None => {
                st.idle = true;
                st = w.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.idle = false;
            }
            Some((token, deadline)) => {
                let now = Instant::now();
                if now < deadline {
                    st.sleeping_until = Some(deadline);
                    st = w
                        .wake
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    st.sleeping_until = None;
                    continue;
                }
                drop(st);
                fire(w, token);
                st = lock(w);
            }
        }
    }
}

fn fire(w: &Watchdog, token: u64) {
    Python::attach(|py| {
        let Ok(exc) = super::budget_exception(py) else {
            return;
        };
        let mut st = lock(w);
        if let Some(a) = st.armed.iter_mut().find(|a| a.token == token && !a.fired) {
            a.fired = true;
            // SAFETY: GIL held; `a.thread` is the ident of the thread that armed this token and
            // is inside the callback (it disarms before leaving, with the GIL).
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(a.thread as _, exc.as_ptr());
            }
        }
    });
}

/// An armed deadline; [`Deadline::disarm`] reports whether it fired.
pub struct Deadline {
    token: u64,
}

/// Arms a deadline `budget` from now for the calling thread, which must hold the GIL (`_py`).
pub fn arm(_py: Python<'_>, budget: Duration) -> Deadline {
    let w = watchdog();
    // SAFETY: plain query of the current thread's ident; GIL held.
    let thread = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
    let mut st = lock(w);
    let token = st.next_token;
    st.next_token += 1;
    let deadline = Instant::now() + budget;
    st.armed.push(Armed {
        token,
        thread,
        deadline,
        fired: false,
    });
    if st.idle || st.sleeping_until.is_some_and(|t| deadline < t) {
        w.wake.notify_one();
    }
    Deadline { token }
}

impl Deadline {
    /// Disarms; returns true when the budget ran out (the exception was raised, or is pending
    /// and gets cleared here so it cannot hit the next callback).
    pub fn disarm(self, _py: Python<'_>) -> bool {
        let w = watchdog();
        let mut st = lock(w);
        let Some(pos) = st.armed.iter().position(|a| a.token == self.token) else {
            return false;
        };
        let a = st.armed.swap_remove(pos);
        if a.fired {
            // SAFETY: GIL held; NULL clears a pending async exception of that thread.
            unsafe {
                pyo3::ffi::PyThreadState_SetAsyncExc(a.thread as _, std::ptr::null_mut());
            }
        }
        a.fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_loop_is_interrupted_and_nothing_leaks() {
        super::super::ensure_init().unwrap();
        Python::attach(|py| {
            let code = c"def spin():\n    while True:\n        pass\n";
            let m = PyModule::from_code(py, code, c"spin.py", c"spin_mod").unwrap();
            let f = m.getattr("spin").unwrap();
            let t0 = Instant::now();
            let d = arm(py, Duration::from_millis(50));
            let err = f.call0().unwrap_err();
            assert!(d.disarm(py));
            let took = t0.elapsed();
            assert!(
                err.get_type(py).name().unwrap() == "CookBudgetExceeded",
                "{err}"
            );
            assert!(
                took >= Duration::from_millis(50) && took < Duration::from_millis(500),
                "{took:?}"
            );
            // The next callback runs normally.
            let d = arm(py, Duration::from_millis(200));
            let v: i64 = py
                .eval(c"sum(range(1000))", None, None)
                .unwrap()
                .extract()
                .unwrap();
            assert!(!d.disarm(py));
            assert_eq!(v, 499500);
        });
    }
}
