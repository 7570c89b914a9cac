//! A bounded single-producer single-consumer queue of MIDI messages of any length (SysEx
//! included), lock-free and allocation-free once made: what passes MIDI between the cook thread
//! and JACK's realtime thread (or a sender thread) in either direction. Built on `rtrb`'s byte
//! ring: each message is a 2-byte length and its bytes, written and committed as one chunk, so
//! the consumer never sees half a message.

/// The length prefix of each message.
const HEAD: usize = 2;

/// The writing end.
pub struct Producer(rtrb::Producer<u8>);

/// The reading end, with room to put together a message that wraps around the ring's end.
pub struct Consumer {
    q: rtrb::Consumer<u8>,
    scratch: Box<[u8]>,
}

/// A queue of `bytes` bytes (at least 64).
pub fn ring(bytes: usize) -> (Producer, Consumer) {
    let (p, q) = rtrb::RingBuffer::new(bytes.max(64));
    let p = Producer(p);
    let scratch = vec![0; p.max_message()].into_boxed_slice();
    (p, Consumer { q, scratch })
}

impl Producer {
    /// The longest message [`push`](Self::push) can ever take.
    pub fn max_message(&self) -> usize {
        (self.0.buffer().capacity() - HEAD).min(usize::from(u16::MAX))
    }

    /// Queues `msg`; false (and nothing queued) when there is no room for it now, or it is
    /// longer than [`max_message`](Self::max_message) or empty.
    pub fn push(&mut self, msg: &[u8]) -> bool {
        self.push_parts(&[msg])
    }

    /// Queues the concatenation of `parts` as one message (a tag before the bytes, with no
    /// copy to put them together); as [`push`](Self::push) otherwise.
    pub fn push_parts(&mut self, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 || len > self.max_message() {
            return false;
        }
        let Ok(chunk) = self.0.write_chunk_uninit(HEAD + len) else {
            return false;
        };
        let bytes = (len as u16).to_le_bytes().into_iter();
        let n = chunk.fill_from_iter(bytes.chain(parts.iter().flat_map(|p| p.iter().copied())));
        debug_assert_eq!(n, HEAD + len);
        true
    }
}

impl Consumer {
    /// Hands the oldest message to `take`, which returns whether it used it: only then is it
    /// removed (a full JACK buffer leaves it for the next period). `None` when the queue is
    /// empty. Never blocks, never allocates.
    pub fn pop_with(&mut self, take: impl FnOnce(&[u8]) -> bool) -> Option<bool> {
        let len = {
            let head = self.q.read_chunk(HEAD).ok()?;
            let (a, b) = head.as_slices();
            let mut h = a.iter().chain(b);
            usize::from(u16::from_le_bytes([*h.next()?, *h.next()?]))
        };
        // The producer commits a message whole, so all of it is there.
        let chunk = self.q.read_chunk(HEAD + len).ok()?;
        let (a, b) = chunk.as_slices();
        let used = if a.len() >= HEAD + len {
            take(&a[HEAD..HEAD + len])
        } else {
            let msg = &mut self.scratch[..len];
            for (d, s) in msg.iter_mut().zip(a.iter().chain(b).skip(HEAD)) {
                *d = *s;
            }
            take(msg)
        };
        if used {
            chunk.commit_all();
        }
        Some(used)
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
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
        assert_eq!(p.max_message(), 62);
        assert!(!p.push(&[0; 63]));
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
