//! A bounded single-producer single-consumer queue of MIDI messages of any length (SysEx
//! included), lock-free and allocation-free once made: what passes MIDI between the cook thread
//! and JACK's realtime thread (or a sender thread) in either direction. Each message lies whole
//! and contiguous in the buffer (a length, then its bytes), so the consumer reads it in place;
//! a message that would cross the buffer's end starts again at its beginning.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Length marker: the rest of the buffer is unused, the next message is at its start.
const WRAP: u16 = u16::MAX;
/// The length prefix of each message.
const HEAD: usize = 2;

struct Inner {
    buf: Box<[UnsafeCell<u8>]>,
    mask: usize,
    /// Bytes written (producer) and read (consumer), ever: positions, not indices.
    written: AtomicUsize,
    read: AtomicUsize,
}

// SAFETY: the producer only writes bytes in `[written, read + cap)` and publishes them with a
// release store of `written`; the consumer only reads bytes in `[read, written)` and frees them
// with a release store of `read`. No byte is touched by both at once.
unsafe impl Sync for Inner {}
unsafe impl Send for Inner {}

impl Inner {
    fn cap(&self) -> usize {
        self.mask + 1
    }
}

/// The writing end.
pub struct Producer(Arc<Inner>);
/// The reading end.
pub struct Consumer(Arc<Inner>);

/// A queue of `bytes` bytes (rounded up to a power of two, at least 64). The longest message it
/// takes is a little under half of that.
pub fn ring(bytes: usize) -> (Producer, Consumer) {
    let cap = bytes.max(64).next_power_of_two();
    let inner = Arc::new(Inner {
        buf: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
        mask: cap - 1,
        written: AtomicUsize::new(0),
        read: AtomicUsize::new(0),
    });
    (Producer(inner.clone()), Consumer(inner))
}

impl Producer {
    /// The longest message [`push`](Self::push) can ever take.
    pub fn max_message(&self) -> usize {
        (self.0.cap() / 2 - HEAD).min(usize::from(WRAP) - 1)
    }

    /// Queues `msg`; false (and nothing queued) when there is no room for it now, or it is
    /// longer than [`max_message`](Self::max_message) or empty.
    pub fn push(&mut self, msg: &[u8]) -> bool {
        self.push_parts(&[msg])
    }

    /// Queues the concatenation of `parts` as one message (a tag before the bytes, with no
    /// copy to put them together); as [`push`](Self::push) otherwise.
    pub fn push_parts(&mut self, parts: &[&[u8]]) -> bool {
        let q = &*self.0;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 || len > self.max_message() {
            return false;
        }
        let w = q.written.load(Ordering::Relaxed);
        let r = q.read.load(Ordering::Acquire);
        let free = q.cap() - (w - r);
        let at = w & q.mask;
        let to_end = q.cap() - at;
        let need = HEAD + len;
        let (skip, start) = if need <= to_end { (0, at) } else { (to_end, 0) };
        if skip + need > free {
            return false;
        }
        // SAFETY: every byte written here is free (see `Inner`).
        unsafe {
            if skip >= HEAD {
                self.put(at, &WRAP.to_le_bytes());
            }
            self.put(start, &(len as u16).to_le_bytes());
            let mut k = start + HEAD;
            for p in parts {
                self.put(k, p);
                k += p.len();
            }
        }
        q.written.store(w + skip + need, Ordering::Release);
        true
    }

    /// # Safety
    /// `[at, at + bytes.len())` lies in the buffer and is free.
    unsafe fn put(&self, at: usize, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: see above.
            unsafe { *self.0.buf[at + i].get() = b };
        }
    }
}

impl Consumer {
    /// Hands the oldest message to `take`, which returns whether it used it: only then is it
    /// removed (a full JACK buffer leaves it for the next period). `None` when the queue is
    /// empty. Never blocks, never allocates.
    pub fn pop_with(&mut self, take: impl FnOnce(&[u8]) -> bool) -> Option<bool> {
        let q = &*self.0;
        let mut r = q.read.load(Ordering::Relaxed);
        let w = q.written.load(Ordering::Acquire);
        loop {
            if r == w {
                q.read.store(r, Ordering::Release);
                return None;
            }
            let at = r & q.mask;
            let to_end = q.cap() - at;
            if to_end < HEAD {
                r += to_end;
                continue;
            }
            // SAFETY: `[r, w)` is written and ours to read (see `Inner`).
            let len = unsafe { u16::from_le_bytes([*q.buf[at].get(), *q.buf[at + 1].get()]) };
            if len == WRAP {
                r += to_end;
                continue;
            }
            let len = usize::from(len);
            // SAFETY: as above; `UnsafeCell<u8>` has the layout of `u8`, and the message's
            // bytes are contiguous.
            let msg = unsafe {
                std::slice::from_raw_parts(q.buf[at + HEAD].get() as *const u8, len)
            };
            let used = take(msg);
            if used {
                r += HEAD + len;
            }
            q.read.store(r, Ordering::Release);
            return Some(used);
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.0.read.load(Ordering::Relaxed) == self.0.written.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Consumer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while c.pop_with(|m| {
            out.push(m.to_vec());
            true
        })
        .is_some()
        {}
        out
    }

    #[test]
    fn messages_come_out_whole_and_in_order_across_the_end() {
        let (mut p, mut c) = ring(64);
        let mut want = Vec::new();
        for i in 0..200u8 {
            let msg: Vec<u8> = (0..(i % 9 + 1)).map(|k| i.wrapping_add(k)).collect();
            assert!(p.push(&msg), "message {i}");
            want.push(msg);
            if i % 3 == 2 {
                assert_eq!(drain(&mut c), want);
                want.clear();
            }
        }
        assert_eq!(drain(&mut c), want);
        assert!(c.is_empty());
    }

    #[test]
    fn full_queue_refuses_and_a_refused_take_keeps_the_message() {
        let (mut p, mut c) = ring(64);
        assert_eq!(p.max_message(), 30);
        assert!(!p.push(&[0; 31]));
        assert!(!p.push(&[]));
        assert!(p.push(&[1; 30]));
        assert!(p.push(&[2; 30]));
        assert!(!p.push(&[3]), "full");
        assert_eq!(c.pop_with(|_| false), Some(false));
        assert_eq!(c.pop_with(|m| m == [1; 30]), Some(true));
        assert!(p.push(&[3]));
        assert_eq!(drain(&mut c), vec![vec![2; 30], vec![3]]);
        assert_eq!(c.pop_with(|_| true), None);
    }

    #[test]
    fn two_threads() {
        let (mut p, mut c) = ring(256);
        let t = std::thread::spawn(move || {
            let mut n = 0u32;
            while n < 100_000 {
                let b = n.to_le_bytes();
                if p.push(&b[..(n % 4 + 1) as usize]) {
                    n += 1;
                }
            }
        });
        let mut n = 0u32;
        while n < 100_000 {
            c.pop_with(|m| {
                let b = n.to_le_bytes();
                assert_eq!(m, &b[..(n % 4 + 1) as usize]);
                n += 1;
                true
            });
        }
        t.join().unwrap();
    }
}
