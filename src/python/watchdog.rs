//! Interrupting runaway callbacks: before each callback the cook thread arms a deadline; if the
//! callback is still running when it passes, a watchdog thread takes the GIL and raises
//! `CookBudgetExceeded` (a `BaseException`) inside it with `PyThreadState_SetAsyncExc`.
//!
//! Latency is the GIL switch interval (1 ms, set at start-up). A callback stuck in a blocking C
//! call (`time.sleep`) is interrupted when the call returns. The cook thread treats a fired
//! deadline as a failure whatever the callback did, and clears an exception that fired but was
//! not delivered so it cannot leak into the next callback.
//!
//! A bare `except:` can swallow that one exception. When the callback is still running
//! [`GRACE`] after it (a loop that catches everything and carries on), the second stage starts:
//! a C trace function on that thread raises `CookBudgetExceeded` again at every line and call,
//! including inside the `except:` block, so the exception leaves every handler until the
//! callback returns; disarming removes the trace function. Tracing a running thread from
//! another one needs `_PyEval_SetTrace(tstate, …)` up to Python 3.11 (exported, and what
//! `sys.settrace` itself calls) and the public `PyEval_SetTraceAllThreads` from 3.12 (the trace
//! function then ignores every other thread).
//!
//! Lock order is always GIL, then the state mutex (the cook thread arms and disarms with the GIL
//! held; the watchdog takes the GIL before it looks at the state to raise), so they cannot
//! deadlock, and the exception can only land in the callback that armed the deadline.

use std::os::raw::{c_int, c_ulong};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::ffi;
use pyo3::prelude::*;

/// How long an interrupted callback may go on (its `except:` / `finally:` blocks) before the
/// second stage raises at every line it runs.
pub const GRACE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// Waiting for the deadline.
    Armed,
    /// The exception was raised at this time.
    Fired(Instant),
    /// The second stage: the trace function raises at every line.
    Tracing,
}

struct Armed {
    token: u64,
    thread: c_ulong,
    /// The armed thread's `PyThreadState`, as an address (for the second stage).
    tstate: usize,
    deadline: Instant,
    stage: Stage,
}

impl Armed {
    /// When the watchdog must act on this deadline next.
    fn due(&self) -> Option<Instant> {
        match self.stage {
            Stage::Armed => Some(self.deadline),
            Stage::Fired(at) => Some(at + GRACE),
            Stage::Tracing => None,
        }
    }
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

/// The `CookBudgetExceeded` class for the trace function (kept alive by the `_chopd` module).
static BUDGET_EXC: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());

/// The thread the second stage is for (3.12+: the trace function is set on every thread).
#[cfg(Py_3_12)]
static TRACED_THREAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
            .filter_map(|a| a.due().map(|t| (a.token, t)))
            .min_by_key(|&(_, t)| t);
        match due {
            None => {
                st.idle = true;
                st = w.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.idle = false;
            }
            Some((token, due)) => {
                let now = Instant::now();
                if now < due {
                    st.sleeping_until = Some(due);
                    st = w
                        .wake
                        .wait_timeout(st, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    st.sleeping_until = None;
                    continue;
                }
                drop(st);
                act(w, token);
                st = lock(w);
            }
        }
    }
}

/// Raises the exception in the callback of `token` (first stage), or starts the second stage
/// when it is still running [`GRACE`] after that.
fn act(w: &Watchdog, token: u64) {
    Python::attach(|py| {
        let Ok(exc) = super::budget_exception(py) else {
            return;
        };
        let mut st = lock(w);
        // Still armed: the callback has not returned (it disarms with the GIL, which this
        // thread holds now).
        let Some(a) = st.armed.iter_mut().find(|a| a.token == token) else {
            return;
        };
        match a.stage {
            Stage::Armed => {
                // SAFETY: GIL held; `a.thread` is the ident of the thread that armed this token
                // and is inside the callback.
                unsafe {
                    ffi::PyThreadState_SetAsyncExc(a.thread as _, exc.as_ptr());
                }
                a.stage = Stage::Fired(Instant::now());
            }
            Stage::Fired(_) => {
                BUDGET_EXC.store(exc.as_ptr(), Ordering::Relaxed);
                // SAFETY: GIL held; the thread state belongs to the thread inside the callback
                // (alive: it disarms before it could end).
                unsafe { start_tracing(a.thread, a.tstate as *mut ffi::PyThreadState) };
                a.stage = Stage::Tracing;
            }
            Stage::Tracing => {}
        }
    });
}

#[cfg(not(Py_3_12))]
extern "C" {
    /// `sys.settrace` for any thread state (CPython ≤ 3.12 exports it; internal from 3.13).
    fn _PyEval_SetTrace(
        tstate: *mut ffi::PyThreadState,
        func: Option<ffi::Py_tracefunc>,
        arg: *mut ffi::PyObject,
    ) -> c_int;
}

/// Sets [`raise_everywhere`] as the C trace function of the thread `thread` / `tstate`.
///
/// # Safety
/// GIL held; `tstate` is the live thread state of `thread`.
unsafe fn start_tracing(thread: c_ulong, tstate: *mut ffi::PyThreadState) {
    #[cfg(not(Py_3_12))]
    {
        let _ = thread;
        if _PyEval_SetTrace(tstate, Some(raise_everywhere), std::ptr::null_mut()) < 0 {
            // An audit hook refused it: the first stage is all there is.
            ffi::PyErr_Clear();
        }
    }
    #[cfg(Py_3_12)]
    {
        let _ = tstate;
        TRACED_THREAD.store(thread as u64, Ordering::Relaxed);
        ffi::PyEval_SetTraceAllThreads(Some(raise_everywhere), std::ptr::null_mut());
    }
}

/// Removes the trace function of the second stage; runs on the thread that armed, with the GIL.
///
/// # Safety
/// GIL held, on the traced thread.
unsafe fn stop_tracing() {
    #[cfg(not(Py_3_12))]
    ffi::PyEval_SetTrace(None, std::ptr::null_mut());
    #[cfg(Py_3_12)]
    {
        TRACED_THREAD.store(0, Ordering::Relaxed);
        ffi::PyEval_SetTraceAllThreads(None, std::ptr::null_mut());
    }
}

/// The second stage's trace function: `CookBudgetExceeded` at every line and call.
unsafe extern "C" fn raise_everywhere(
    _obj: *mut ffi::PyObject,
    _frame: *mut ffi::PyFrameObject,
    what: c_int,
    _arg: *mut ffi::PyObject,
) -> c_int {
    if what != ffi::PyTrace_LINE && what != ffi::PyTrace_CALL {
        return 0;
    }
    #[cfg(Py_3_12)]
    if ffi::PyThread_get_thread_ident() as u64 != TRACED_THREAD.load(Ordering::Relaxed) {
        return 0;
    }
    let exc = BUDGET_EXC.load(Ordering::Relaxed);
    if exc.is_null() {
        return 0;
    }
    ffi::PyErr_SetNone(exc);
    -1
}

/// An armed deadline; [`Deadline::disarm`] reports whether it fired.
pub struct Deadline {
    token: u64,
}

/// Arms a deadline `budget` from now for the calling thread, which must hold the GIL (`_py`).
pub fn arm(_py: Python<'_>, budget: Duration) -> Deadline {
    let w = watchdog();
    // SAFETY: plain queries of the current thread's ident and thread state; GIL held.
    let (thread, tstate) = unsafe { (ffi::PyThread_get_thread_ident(), ffi::PyThreadState_Get()) };
    let mut st = lock(w);
    let token = st.next_token;
    st.next_token += 1;
    let deadline = Instant::now() + budget;
    st.armed.push(Armed {
        token,
        thread,
        tstate: tstate as usize,
        deadline,
        stage: Stage::Armed,
    });
    if st.idle || st.sleeping_until.is_some_and(|t| deadline < t) {
        w.wake.notify_one();
    }
    Deadline { token }
}

impl Deadline {
    /// Disarms; returns true when the budget ran out (the exception was raised, or is pending
    /// and gets cleared here so it cannot hit the next callback; the second stage's trace
    /// function is removed).
    pub fn disarm(self, _py: Python<'_>) -> bool {
        let w = watchdog();
        let mut st = lock(w);
        let Some(pos) = st.armed.iter().position(|a| a.token == self.token) else {
            return false;
        };
        let a = st.armed.swap_remove(pos);
        if a.stage == Stage::Tracing {
            // SAFETY: GIL held, on the thread that armed (the traced one).
            unsafe { stop_tracing() };
        }
        if a.stage != Stage::Armed {
            // SAFETY: GIL held; NULL clears a pending async exception of that thread.
            unsafe {
                ffi::PyThreadState_SetAsyncExc(a.thread as _, std::ptr::null_mut());
            }
        }
        a.stage != Stage::Armed
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

    #[test]
    fn a_bare_except_around_the_loop_returns_at_the_first_stage() {
        super::super::ensure_init().unwrap();
        Python::attach(|py| {
            let code = c"def spin():\n    try:\n        while True:\n            pass\n    except:\n        return 'swallowed'\n";
            let m = PyModule::from_code(py, code, c"swallow.py", c"swallow_mod").unwrap();
            let f = m.getattr("spin").unwrap();
            let t0 = Instant::now();
            let d = arm(py, Duration::from_millis(50));
            let v: String = f.call0().unwrap().extract().unwrap();
            assert!(
                d.disarm(py),
                "the cook thread must still see the budget as blown"
            );
            assert_eq!(v, "swallowed");
            assert!(
                t0.elapsed() < Duration::from_millis(50) + GRACE,
                "{:?}",
                t0.elapsed()
            );
        });
    }

    #[test]
    fn a_loop_that_swallows_every_interrupt_is_ended_by_the_second_stage() {
        super::super::ensure_init().unwrap();
        Python::attach(|py| {
            // "Keep going whatever happens" around work that loops: the first exception lands
            // in work() and is caught; only raising at every line ends it.
            let code = c"def work():\n    while True:\n        pass\n\ndef spin():\n    caught = 0\n    while True:\n        try:\n            work()\n        except:\n            caught += 1\n";
            let m = PyModule::from_code(py, code, c"swallow_loop.py", c"swallow_loop_mod").unwrap();
            let f = m.getattr("spin").unwrap();
            let t0 = Instant::now();
            let d = arm(py, Duration::from_millis(50));
            let err = f.call0().unwrap_err();
            assert!(d.disarm(py));
            let took = t0.elapsed();
            assert_eq!(
                err.get_type(py).name().unwrap(),
                "CookBudgetExceeded",
                "{err}"
            );
            assert!(
                took >= Duration::from_millis(50) + GRACE && took < Duration::from_secs(2),
                "{took:?}"
            );
            // The trace function is gone: the next callback runs normally, untraced.
            let d = arm(py, Duration::from_millis(500));
            let v: i64 = py
                .eval(c"sum(i for i in range(100000))", None, None)
                .unwrap()
                .extract()
                .unwrap();
            assert!(!d.disarm(py));
            assert_eq!(v, 4999950000);
            let trace = py.import("sys").unwrap().call_method0("gettrace").unwrap();
            assert!(trace.is_none());
        });
    }
}
