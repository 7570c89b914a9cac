//! OSC packets on a byte stream (TCP): OSC 1.1's SLIP framing (RFC 1055: each packet ends with
//! `END`, `END` and `ESC` inside it escaped) and OSC 1.0's size prefix (a big-endian int32 byte
//! count before each packet). Encoding appends a framed packet to a buffer; [`Deframer`] takes
//! the stream in whatever pieces the socket gives and hands back whole packets.
//!
//! Bounded whatever the peer sends: a frame longer than the deframer's `max` is never buffered.
//! A long SLIP frame is skipped up to its `END` and counted; a size prefix over `max` (a 2 GB
//! one, say) leaves no way to find the next packet, so it ends the stream
//! ([`Fatal::Oversize`]) and the caller closes the connection.

/// How packets are delimited on a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// OSC 1.1: SLIP, double-`END` encoded (an `END` before and after each packet).
    Slip,
    /// OSC 1.0: a 4-byte big-endian size before each packet.
    Size,
}

impl Framing {
    pub fn token(self) -> &'static str {
        match self {
            Framing::Slip => "slip",
            Framing::Size => "size",
        }
    }
}

const END: u8 = 0xC0;
const ESC: u8 = 0xDB;
const ESC_END: u8 = 0xDC;
const ESC_ESC: u8 = 0xDD;

/// Appends `packet`, framed, to `out`.
pub fn encode(framing: Framing, packet: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::Size => {
            // A packet is at most a UDP payload or `max_packet`, far below 4 GiB.
            out.extend_from_slice(&(packet.len() as u32).to_be_bytes());
            out.extend_from_slice(packet);
        }
        Framing::Slip => {
            out.reserve(packet.len() + 2);
            // A leading END flushes any line noise the receiver holds (RFC 1055).
            out.push(END);
            for &b in packet {
                match b {
                    END => out.extend_from_slice(&[ESC, ESC_END]),
                    ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
                    b => out.push(b),
                }
            }
            out.push(END);
        }
    }
}

/// A problem with one frame; the stream goes on after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A SLIP frame longer than the limit: skipped up to its `END`.
    Oversize,
    /// A SLIP `ESC` followed by something other than `ESC_END`/`ESC_ESC`: the frame is dropped.
    BadEscape,
    /// A size prefix of 0.
    Empty,
}

/// A problem that ends the stream: nothing after it can be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// A size prefix over the limit (the size it announced).
    Oversize(u64),
}

/// Turns a byte stream back into packets. Holds at most one frame of `max` bytes.
#[derive(Debug)]
pub struct Deframer {
    framing: Framing,
    max: usize,
    /// The frame (SLIP: unescaped so far) or size prefix being read.
    buf: Vec<u8>,
    /// Size framing: the size of the packet being read, once its prefix is complete.
    want: Option<usize>,
    /// SLIP: the last byte was an `ESC`.
    escaped: bool,
    /// SLIP: the current frame is being skipped (too long, or a bad escape) up to its `END`.
    skipping: bool,
}

impl Deframer {
    pub fn new(framing: Framing, max: usize) -> Deframer {
        Deframer {
            framing,
            max,
            buf: Vec::new(),
            want: None,
            escaped: false,
            skipping: false,
        }
    }

    /// Feeds the next bytes of the stream, calling `each` with every packet completed (or
    /// frame refused) in order. After an `Err` the stream is unusable.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(Result<&[u8], FrameError>),
    ) -> Result<(), Fatal> {
        match self.framing {
            Framing::Slip => {
                self.feed_slip(bytes, &mut each);
                Ok(())
            }
            Framing::Size => self.feed_size(bytes, &mut each),
        }
    }

    /// True when the stream stopped inside a frame (a peer that closed mid-packet).
    pub fn is_mid_frame(&self) -> bool {
        match self.framing {
            Framing::Slip => !self.buf.is_empty() || self.escaped,
            Framing::Size => !self.buf.is_empty() || self.want.is_some(),
        }
    }

    fn feed_slip(&mut self, mut bytes: &[u8], each: &mut impl FnMut(Result<&[u8], FrameError>)) {
        // Fast path: between frames, a whole frame without escapes in this read is handed
        // over as it lies, uncopied (what senders write, one packet per write, nearly always is).
        while self.buf.is_empty() && !self.escaped && !self.skipping {
            let Some(end) = bytes.iter().position(|&b| b == END) else {
                break;
            };
            let frame = &bytes[..end];
            if frame.contains(&ESC) || frame.len() > self.max {
                break;
            }
            if !frame.is_empty() {
                each(Ok(frame));
            }
            bytes = &bytes[end + 1..];
        }
        for &b in bytes {
            if b == END {
                if !self.skipping && !self.escaped && !self.buf.is_empty() {
                    each(Ok(&self.buf));
                } else if self.escaped && !self.skipping {
                    // `ESC END`: the frame ends in the middle of an escape.
                    each(Err(FrameError::BadEscape));
                }
                self.buf.clear();
                self.escaped = false;
                self.skipping = false;
                continue;
            }
            if self.skipping {
                continue;
            }
            let byte = if self.escaped {
                self.escaped = false;
                match b {
                    ESC_END => END,
                    ESC_ESC => ESC,
                    _ => {
                        self.skip(each, FrameError::BadEscape);
                        continue;
                    }
                }
            } else if b == ESC {
                self.escaped = true;
                continue;
            } else {
                b
            };
            if self.buf.len() >= self.max {
                self.skip(each, FrameError::Oversize);
                continue;
            }
            self.buf.push(byte);
        }
    }

    fn skip(&mut self, each: &mut impl FnMut(Result<&[u8], FrameError>), why: FrameError) {
        each(Err(why));
        self.skipping = true;
        self.escaped = false;
        self.buf.clear();
    }

    fn feed_size(
        &mut self,
        mut bytes: &[u8],
        each: &mut impl FnMut(Result<&[u8], FrameError>),
    ) -> Result<(), Fatal> {
        while !bytes.is_empty() {
            let Some(want) = self.want else {
                let take = (4 - self.buf.len()).min(bytes.len());
                self.buf.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if let Ok(prefix) = <[u8; 4]>::try_from(&self.buf[..]) {
                    self.buf.clear();
                    // OSC 1.0 calls the size an int32; a negative one is as unusable as a huge one.
                    let size = u32::from_be_bytes(prefix) as usize;
                    if size > self.max {
                        return Err(Fatal::Oversize(size as u64));
                    }
                    if size == 0 {
                        each(Err(FrameError::Empty));
                    } else {
                        self.want = Some(size);
                    }
                }
                continue;
            };
            if self.buf.is_empty() && bytes.len() >= want {
                // The whole packet is in this read: no copy.
                each(Ok(&bytes[..want]));
                bytes = &bytes[want..];
                self.want = None;
                continue;
            }
            let take = (want - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == want {
                each(Ok(&self.buf));
                self.buf.clear();
                self.want = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a deframer handed over: packets and refused frames, in order.
    type Frames = Vec<Result<Vec<u8>, FrameError>>;

    /// Everything a deframer makes of `stream` fed in pieces of `chunk` bytes.
    fn run(
        framing: Framing,
        max: usize,
        stream: &[u8],
        chunk: usize,
    ) -> (Frames, Result<(), Fatal>) {
        let mut d = Deframer::new(framing, max);
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            let r = d.feed(piece, |p| out.push(p.map(<[u8]>::to_vec)));
            if r.is_err() {
                return (out, r);
            }
        }
        (out, Ok(()))
    }

    #[test]
    fn golden_slip() {
        let mut b = Vec::new();
        encode(Framing::Slip, b"a\xC0b\xDBc", &mut b);
        assert_eq!(b, b"\xC0a\xDB\xDCb\xDB\xDDc\xC0");
    }

    #[test]
    fn golden_size() {
        let mut b = Vec::new();
        encode(Framing::Size, b"/x\0\0,\0\0\0", &mut b);
        assert_eq!(b, b"\0\0\0\x08/x\0\0,\0\0\0");
    }

    #[test]
    fn packets_come_back_whatever_the_pieces() {
        let packets: Vec<Vec<u8>> = vec![
            b"/a\0\0,f\0\0\x3f\x80\0\0".to_vec(),
            vec![0xC0, 0xDB, 0xDC, 0xDD, 0, 1, 2, 3],
            (0..=255u8).collect(),
        ];
        for framing in [Framing::Slip, Framing::Size] {
            let mut stream = Vec::new();
            for p in &packets {
                encode(framing, p, &mut stream);
            }
            for chunk in [1, 2, 3, 5, 7, 64, stream.len()] {
                let (out, r) = run(framing, 1024, &stream, chunk);
                assert_eq!(r, Ok(()));
                let want: Vec<_> = packets.iter().cloned().map(Ok).collect();
                assert_eq!(out, want, "{framing:?} in pieces of {chunk}");
            }
        }
    }

    /// Senders that end frames only (no leading END) and empty frames between packets.
    #[test]
    fn slip_with_single_end_and_empty_frames() {
        let (out, _) = run(Framing::Slip, 64, b"ab\xC0\xC0\xC0cd\xC0", 1);
        assert_eq!(out, [Ok(b"ab".to_vec()), Ok(b"cd".to_vec())]);
    }

    #[test]
    fn a_long_slip_frame_is_skipped_to_its_end() {
        let mut stream = vec![0x41; 100];
        stream.push(END);
        stream.extend_from_slice(b"ok\xC0");
        // In pieces, and whole (where the uncopied path meets it first).
        for chunk in [7, stream.len()] {
            let (out, r) = run(Framing::Slip, 64, &stream, chunk);
            assert_eq!(r, Ok(()));
            assert_eq!(out, [Err(FrameError::Oversize), Ok(b"ok".to_vec())]);
        }
        // Exactly `max` bytes fit.
        let (out, _) = run(Framing::Slip, 4, b"abcd\xC0", 1);
        assert_eq!(out, [Ok(b"abcd".to_vec())]);
    }

    #[test]
    fn a_bad_slip_escape_drops_its_frame_only() {
        let stream = b"a\xDBxbc\xC0ok\xC0a\xDB\xC0";
        for chunk in [1, stream.len()] {
            let (out, _) = run(Framing::Slip, 64, stream, chunk);
            assert_eq!(
                out,
                [
                    Err(FrameError::BadEscape),
                    Ok(b"ok".to_vec()),
                    Err(FrameError::BadEscape)
                ]
            );
        }
    }

    #[test]
    fn a_huge_size_prefix_ends_the_stream_without_allocating() {
        let mut stream = 0x7fff_ffffu32.to_be_bytes().to_vec();
        stream.extend_from_slice(&[0; 64]);
        let mut d = Deframer::new(Framing::Size, 65_536);
        let r = d.feed(&stream, |_| panic!("no packet"));
        assert_eq!(r, Err(Fatal::Oversize(0x7fff_ffff)));
        assert!(d.buf.capacity() <= 64);
    }

    #[test]
    fn size_zero_is_refused_and_the_stream_goes_on() {
        let (out, r) = run(Framing::Size, 64, b"\0\0\0\0\0\0\0\x01z", 1);
        assert_eq!(r, Ok(()));
        assert_eq!(out, [Err(FrameError::Empty), Ok(b"z".to_vec())]);
    }

    #[test]
    fn a_truncated_frame_is_seen_as_mid_frame() {
        for framing in [Framing::Slip, Framing::Size] {
            let mut stream = Vec::new();
            encode(framing, b"/abc\0\0\0\0", &mut stream);
            for n in 1..stream.len() {
                let mut d = Deframer::new(framing, 64);
                let mut got = 0;
                d.feed(&stream[..n], |_| got += 1).unwrap();
                // SLIP's leading END alone is no frame yet.
                let partial = !(framing == Framing::Slip && n == 1);
                assert_eq!(d.is_mid_frame(), partial, "{framing:?} cut at {n}");
                assert_eq!(got, 0);
            }
        }
    }
}
