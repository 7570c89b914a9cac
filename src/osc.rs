//! The OSC wire format, for every part of the daemon that reads or writes it: framing and depth
//! checks, packet decoding, the hand encoding of single-number messages, the one size-bounded
//! bundle packer, and time tags.
//!
//! Decoding is rosc's, but only after [`check`] has walked the bytes without recursion: rosc
//! takes a bundle element that overruns its packet for an empty bundle, and it builds nested
//! bundles and arrays as deep as the sender likes. Hostile input nested thousands of levels deep
//! would then overflow the stack of whatever recursed over it next (dropping it, formatting it),
//! so anything deeper than [`MAX_DEPTH`] is refused before rosc sees it.
//!
//! Inputs decode with [`each_message`]: rosc stops a bundle at its first undecodable element and
//! drops the rest, so the bundles are walked here (their framing already checked) and every
//! element is decoded on its own; a bad one is counted and the others still arrive.

pub mod framing;

use std::time::{SystemTime, UNIX_EPOCH};

use rosc::{OscMessage, OscPacket, OscType};

/// Deepest nesting accepted, counted separately for bundles within bundles and for arrays
/// within one message's arguments. Real senders use one or two levels.
pub const MAX_DEPTH: usize = 16;

/// An error from a receive or send on an OSC socket or stream with a timeout that means "nothing
/// yet, try again": the timeout ran out, or a signal interrupted the call.
pub fn is_retry(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

/// `#bundle\0` + time tag.
pub const BUNDLE_HEADER: usize = 16;

/// OSC time tag meaning "immediately".
pub const IMMEDIATELY: u64 = 1;

/// Seconds from 1900 (NTP era) to 1970 (Unix epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why a datagram was not decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("bad bundle framing")]
    Framing,
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("{0}")]
    Osc(String),
}

/// Decodes one datagram after [`check`] has accepted it.
pub fn decode(bytes: &[u8]) -> Result<OscPacket, DecodeError> {
    check(bytes)?;
    rosc::decoder::decode_udp(bytes)
        .map(|(_, p)| p)
        .map_err(|e| DecodeError::Osc(e.to_string()))
}

/// Checks a datagram before it is decoded: every bundle element size is a positive multiple of
/// 4 that fits its bundle, the sizes add up to the whole, and neither bundles nor arrays nest
/// deeper than [`MAX_DEPTH`]. Walks with an explicit stack bounded by `MAX_DEPTH`.
pub fn check(bytes: &[u8]) -> Result<(), DecodeError> {
    // The bundles being walked, outermost first: where the next element starts, where it ends.
    // Empty (no allocation) for a message on its own.
    let mut open: Vec<(usize, usize)> = Vec::new();
    check_element(bytes, 0, bytes.len(), &mut open)?;
    while let Some((next, end)) = open.last_mut() {
        if *next == *end {
            open.pop();
            continue;
        }
        let Some(size) = bytes[*next..*end].first_chunk::<4>() else {
            return Err(DecodeError::Framing);
        };
        let size = u32::from_be_bytes(*size) as usize;
        let start = *next + 4;
        if size == 0 || size % 4 != 0 || size > *end - start {
            return Err(DecodeError::Framing);
        }
        *next = start + size;
        check_element(bytes, start, start + size, &mut open)?;
    }
    Ok(())
}

fn check_element(
    bytes: &[u8],
    start: usize,
    end: usize,
    open: &mut Vec<(usize, usize)>,
) -> Result<(), DecodeError> {
    let element = &bytes[start..end];
    if is_bundle(element) {
        // `open` holds exactly the bundles around this one.
        if open.len() >= MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        if element.len() < BUNDLE_HEADER {
            return Err(DecodeError::Framing);
        }
        open.push((start + BUNDLE_HEADER, end));
        Ok(())
    } else {
        check_array_depth(element)
    }
}

/// Array nesting of one message, read from its type tags where rosc will read them: after the
/// address string and its padding. rosc skips the first type tag character whatever it is.
fn check_array_depth(message: &[u8]) -> Result<(), DecodeError> {
    let Some(nul) = message.iter().position(|&b| b == 0) else {
        return Ok(());
    };
    let tags_at = (nul + 4) & !3;
    let Some(tags) = message.get(tags_at + 1..) else {
        return Ok(());
    };
    let mut depth = 0usize;
    for &b in tags.iter().take_while(|&&b| b != 0) {
        match b {
            b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
            }
            b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Calls `each` for every message of a datagram in wire order, bundles unpacked (without
/// recursion), and returns how many elements were not OSC messages. A datagram that fails
/// [`check`] is refused whole: without its framing there are no elements to tell apart.
pub fn each_message(bytes: &[u8], mut each: impl FnMut(OscMessage)) -> Result<usize, DecodeError> {
    each_timed_message(bytes, |m, _| each(m))
}

/// [`each_message`], with each message's time tag: its innermost bundle's, [`IMMEDIATELY`] for
/// a message on its own.
pub fn each_timed_message(
    bytes: &[u8],
    mut each: impl FnMut(OscMessage, u64),
) -> Result<usize, DecodeError> {
    check(bytes)?;
    let mut bad = 0;
    let mut element = |bytes: &[u8], tag: u64| match rosc::decoder::decode_udp(bytes) {
        Ok((_, OscPacket::Message(m))) => each(m, tag),
        // `check` left no bundle here (every `#bundle` element is walked below).
        Ok((_, OscPacket::Bundle(_))) | Err(_) => bad += 1,
    };
    if !is_bundle(bytes) {
        element(bytes, IMMEDIATELY);
        return Ok(bad);
    }
    // `check` saw a whole header at the start of every bundle.
    let tag_at =
        |at: usize| u64::from_be_bytes(bytes[at + 8..at + 16].try_into().expect("checked"));
    // The bundles being walked: where the next element starts, where the bundle ends, its tag.
    let mut open: Vec<(usize, usize, u64)> = vec![(BUNDLE_HEADER, bytes.len(), tag_at(0))];
    while let Some((next, end, tag)) = open.last_mut() {
        if *next == *end {
            open.pop();
            continue;
        }
        let size =
            u32::from_be_bytes(bytes[*next..*next + 4].try_into().expect("checked")) as usize;
        let start = *next + 4;
        *next = start + size;
        let tag = *tag;
        let e = &bytes[start..start + size];
        if is_bundle(e) {
            open.push((start + BUNDLE_HEADER, start + size, tag_at(start)));
        } else {
            element(e, tag);
        }
    }
    Ok(bad)
}

/// The time an OSC (NTP) time tag names; `None` for [`IMMEDIATELY`] and for tags before the
/// Unix epoch.
pub fn tag_time(tag: u64) -> Option<SystemTime> {
    let secs = (tag >> 32).checked_sub(NTP_UNIX_OFFSET)?;
    if tag == IMMEDIATELY {
        return None;
    }
    let nanos = ((tag & 0xffff_ffff) * 1_000_000_000) >> 32;
    Some(UNIX_EPOCH + std::time::Duration::new(secs, nanos as u32))
}

fn is_bundle(element: &[u8]) -> bool {
    element.starts_with(b"#bundle\0")
}

/// The messages of a packet in wire order, bundles unpacked (without recursion).
pub fn messages(packet: OscPacket) -> Vec<OscMessage> {
    let mut out = Vec::new();
    let mut stack = match packet {
        OscPacket::Message(m) => return vec![m],
        OscPacket::Bundle(b) => vec![b.content.into_iter()],
    };
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(OscPacket::Message(m)) => out.push(m),
            Some(OscPacket::Bundle(b)) => stack.push(b.content.into_iter()),
            None => {
                stack.pop();
            }
        }
    }
    out
}

/// What kind of argument `a` is, for messages to people: never its value, which may be a large
/// or deeply nested thing from the network.
pub fn type_name(a: &OscType) -> &'static str {
    match a {
        OscType::Int(_) => "an int",
        OscType::Float(_) => "a float",
        OscType::String(_) => "a string",
        OscType::Blob(_) => "a blob",
        OscType::Time(_) => "a time tag",
        OscType::Long(_) => "a long int",
        OscType::Double(_) => "a double",
        OscType::Char(_) => "a char",
        OscType::Color(_) => "a color",
        OscType::Midi(_) => "a MIDI message",
        OscType::Bool(_) => "a boolean",
        OscType::Array(_) => "an array",
        OscType::Nil => "nil",
        OscType::Inf => "infinitum",
    }
}

/// The one argument of a hand-encoded message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    Float(f32),
    Double(f64),
    Int(i32),
}

/// Appends one OSC message `address arg` to `buf`, whose length must be a multiple of 4 (every
/// encoded message is).
pub fn encode_message(buf: &mut Vec<u8>, address: &str, arg: Arg) {
    let start = buf.len();
    buf.extend_from_slice(address.as_bytes());
    buf.push(0);
    // Padding is relative to the message start, which is always 4-aligned in `buf`.
    while (buf.len() - start) % 4 != 0 {
        buf.push(0);
    }
    encode_arg(buf, arg);
}

/// An address encoded once (NUL-terminated and padded to 4 bytes), for one sent again and again.
#[derive(Clone, Debug, PartialEq)]
pub struct Address(Box<[u8]>);

impl Address {
    pub fn new(address: &str) -> Address {
        let mut b = Vec::with_capacity(address.len() + 4);
        b.extend_from_slice(address.as_bytes());
        b.push(0);
        b.resize(b.len().next_multiple_of(4), 0);
        Address(b.into_boxed_slice())
    }

    /// Its bytes on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Appends `address arg` like [`encode_message`], from an address encoded once.
pub fn encode_at(buf: &mut Vec<u8>, address: &Address, arg: Arg) {
    buf.extend_from_slice(&address.0);
    encode_arg(buf, arg);
}

fn encode_arg(buf: &mut Vec<u8>, arg: Arg) {
    match arg {
        Arg::Float(v) => {
            buf.extend_from_slice(b",f\0\0");
            buf.extend_from_slice(&v.to_be_bytes());
        }
        Arg::Double(v) => {
            buf.extend_from_slice(b",d\0\0");
            buf.extend_from_slice(&v.to_be_bytes());
        }
        Arg::Int(v) => {
            buf.extend_from_slice(b",i\0\0");
            buf.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// OSC (NTP) time tag for `t`.
pub fn ntp_time(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// A lone message: sent as itself, or still wrapped in a bundle (a time tag needs one; the
/// control port's replies always come in bundles).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lone {
    Bare,
    Bundled,
}

/// Encoded messages queued back to back, packed into bundles of at most `max_packet` bytes. A
/// message too big for any bundle goes alone. Buffers are kept between batches, so a steady
/// stream allocates nothing.
#[derive(Debug)]
pub struct Packer {
    max_packet: usize,
    buf: Vec<u8>,
    /// Where each queued message ends in `buf`.
    ends: Vec<usize>,
    packet: Vec<u8>,
}

impl Packer {
    pub fn new(max_packet: usize) -> Packer {
        Packer {
            max_packet,
            buf: Vec::new(),
            ends: Vec::new(),
            packet: Vec::with_capacity(max_packet),
        }
    }

    /// Messages queued and not yet packed.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Queues a hand-encoded message.
    pub fn push(&mut self, address: &str, arg: Arg) {
        encode_message(&mut self.buf, address, arg);
        self.ends.push(self.buf.len());
    }

    /// Queues `address arg` from an address encoded once.
    pub fn push_at(&mut self, address: &Address, arg: Arg) {
        encode_at(&mut self.buf, address, arg);
        self.ends.push(self.buf.len());
    }

    /// Queues any message, encoded by rosc.
    pub fn push_message(&mut self, m: OscMessage) {
        // Encoding into a Vec cannot fail.
        let _ = rosc::encoder::encode_into(&OscPacket::Message(m), &mut self.buf);
        self.ends.push(self.buf.len());
    }

    /// Packs everything queued into packets, greedily in order, and hands each to `send` with
    /// the number of messages in it; the queue is empty afterwards.
    pub fn drain(&mut self, timetag: u64, lone: Lone, mut send: impl FnMut(&[u8], usize)) {
        let mut start = 0;
        let mut i = 0;
        while i < self.ends.len() {
            let mut j = i;
            let mut size = BUNDLE_HEADER;
            while j < self.ends.len() {
                let len = self.ends[j] - if j == 0 { 0 } else { self.ends[j - 1] };
                if j > i && size + 4 + len > self.max_packet {
                    break;
                }
                size += 4 + len;
                j += 1;
            }
            let end = self.ends[j - 1];
            self.packet.clear();
            if j - i == 1 && lone == Lone::Bare {
                self.packet.extend_from_slice(&self.buf[start..end]);
            } else {
                self.packet.extend_from_slice(b"#bundle\0");
                self.packet.extend_from_slice(&timetag.to_be_bytes());
                let mut s = start;
                for &e in &self.ends[i..j] {
                    self.packet
                        .extend_from_slice(&((e - s) as u32).to_be_bytes());
                    self.packet.extend_from_slice(&self.buf[s..e]);
                    s = e;
                }
            }
            send(&self.packet, j - i);
            start = end;
            i = j;
        }
        self.buf.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosc::{OscArray, OscBundle, OscTime};

    fn rosc_message(p: &[u8]) -> OscMessage {
        match rosc::decoder::decode_udp(p).unwrap().1 {
            OscPacket::Message(m) => m,
            OscPacket::Bundle(_) => panic!("not a message"),
        }
    }

    #[test]
    fn golden_float_message() {
        let mut b = Vec::new();
        encode_message(&mut b, "/show/tx", Arg::Float(0.5));
        assert_eq!(b, b"/show/tx\0\0\0\0,f\0\0\x3f\x00\x00\x00");
        // It is what rosc decodes.
        let m = rosc_message(&b);
        assert_eq!(m.addr, "/show/tx");
        assert_eq!(m.args, vec![OscType::Float(0.5)]);
    }

    #[test]
    fn an_address_encoded_once_gives_the_same_bytes() {
        for a in ["/", "/a", "/abc", "/abcd", "/project1/many/chan/c10"] {
            for arg in [Arg::Float(0.25), Arg::Int(-3), Arg::Double(2.5)] {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                encode_message(&mut x, a, arg);
                encode_at(&mut y, &Address::new(a), arg);
                assert_eq!(x, y, "{a} {arg:?}");
                assert_eq!(Address::new(a).bytes().len() % 4, 0);
            }
        }
    }

    #[test]
    fn golden_int_and_double() {
        let mut b = Vec::new();
        encode_message(&mut b, "/a", Arg::Int(3));
        assert_eq!(b, b"/a\0\0,i\0\0\0\0\0\x03");
        b.clear();
        encode_message(&mut b, "/abc", Arg::Double(1.0));
        assert_eq!(b, b"/abc\0\0\0\0,d\0\0\x3f\xf0\0\0\0\0\0\0");
    }

    #[test]
    fn ntp_time_of_the_unix_epoch_and_a_half_second() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(500);
        assert_eq!(ntp_time(t), (NTP_UNIX_OFFSET << 32) | (1 << 31));
    }

    fn packed(max: usize, sizes: &[usize]) -> Vec<(Vec<u8>, usize)> {
        let mut p = Packer::new(max);
        for (i, &n) in sizes.iter().enumerate() {
            // An address of n - 9 characters makes an n-byte message when n is a multiple of 4.
            p.push(&format!("/{i:0>w$}", w = n - 10), Arg::Float(i as f32));
        }
        let mut out = Vec::new();
        p.drain(IMMEDIATELY, Lone::Bundled, |b, n| out.push((b.to_vec(), n)));
        assert!(p.is_empty());
        out
    }

    #[test]
    fn the_packer_never_exceeds_its_size() {
        for max in [64, 100, 128, 1472] {
            let sizes: Vec<usize> = (0..200).map(|i| 12 + 4 * (i % 7)).collect();
            let packets = packed(max, &sizes);
            assert!(packets.len() > 1);
            let mut seen = 0;
            for (bytes, n) in &packets {
                assert!(bytes.len() <= max, "{} > {max}", bytes.len());
                let OscPacket::Bundle(b) = rosc::decoder::decode_udp(bytes).unwrap().1 else {
                    panic!("expected a bundle")
                };
                assert_eq!(b.timetag, OscTime::from((0, 1)));
                assert_eq!(b.content.len(), *n);
                seen += n;
            }
            assert_eq!(seen, sizes.len());
        }
    }

    #[test]
    fn a_message_too_big_for_any_bundle_goes_alone() {
        let packets = packed(64, &[20, 100, 20]);
        let counts: Vec<usize> = packets.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [1, 1, 1]);
        assert_eq!(packets[1].0.len(), BUNDLE_HEADER + 4 + 100);
    }

    #[test]
    fn a_lone_message_goes_bare_when_asked() {
        let mut p = Packer::new(1472);
        p.push("/x", Arg::Float(1.0));
        let mut out = Vec::new();
        p.drain(IMMEDIATELY, Lone::Bare, |b, _| out.push(b.to_vec()));
        assert_eq!(out, [b"/x\0\0,f\0\0\x3f\x80\0\0".to_vec()]);
    }

    #[test]
    fn rosc_messages_pack_too() {
        let mut p = Packer::new(1472);
        for i in 0..3 {
            p.push_message(OscMessage {
                addr: format!("/r{i}"),
                args: vec![OscType::String("s".into()), OscType::Int(i)],
            });
        }
        let mut out = Vec::new();
        p.drain(IMMEDIATELY, Lone::Bundled, |b, _| out.push(b.to_vec()));
        let [one] = &out[..] else { panic!() };
        let ms = messages(decode(one).unwrap());
        let addrs: Vec<&str> = ms.iter().map(|m| m.addr.as_str()).collect();
        assert_eq!(addrs, ["/r0", "/r1", "/r2"]);
        assert_eq!(ms[2].args[1], OscType::Int(2));
    }

    fn bundle(content: Vec<OscPacket>) -> OscPacket {
        OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content,
        })
    }

    fn msg(addr: &str) -> OscPacket {
        OscPacket::Message(OscMessage {
            addr: addr.into(),
            args: vec![OscType::Float(1.0)],
        })
    }

    #[test]
    fn messages_come_in_wire_order() {
        let p = bundle(vec![
            msg("/a"),
            bundle(vec![msg("/b"), bundle(vec![msg("/c")])]),
            msg("/d"),
        ]);
        let bytes = rosc::encoder::encode(&p).unwrap();
        let addrs: Vec<String> = messages(decode(&bytes).unwrap())
            .into_iter()
            .map(|m| m.addr)
            .collect();
        assert_eq!(addrs, ["/a", "/b", "/c", "/d"]);
    }

    #[test]
    fn bundles_nest_up_to_the_bound() {
        let mut p = msg("/x");
        for _ in 0..MAX_DEPTH {
            p = bundle(vec![p]);
        }
        let ok = rosc::encoder::encode(&p).unwrap();
        assert_eq!(messages(decode(&ok).unwrap()).len(), 1);
        let deeper = rosc::encoder::encode(&bundle(vec![p])).unwrap();
        assert_eq!(decode(&deeper).unwrap_err(), DecodeError::TooDeep);
    }

    #[test]
    fn bad_framing_is_refused() {
        for bytes in [
            &b"#bundle\0"[..],
            // An element size that overruns the packet.
            b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\xff",
            // Not a multiple of 4, and zero.
            b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\x03/x\0",
            b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\0",
            // A size cut short.
            b"#bundle\0\0\0\0\0\0\0\0\x01\0\0",
        ] {
            assert_eq!(check(bytes), Err(DecodeError::Framing), "{bytes:?}");
        }
        assert!(matches!(decode(b"/x\0"), Err(DecodeError::Osc(_))));
    }

    #[test]
    fn arrays_nest_up_to_the_bound() {
        let mut arg = OscType::Float(1.0);
        for _ in 0..MAX_DEPTH {
            arg = OscType::Array(OscArray { content: vec![arg] });
        }
        let mut m = OscMessage {
            addr: "/a".into(),
            args: vec![arg],
        };
        let ok = rosc::encoder::encode(&OscPacket::Message(m.clone())).unwrap();
        assert!(decode(&ok).is_ok());
        m.args = vec![OscType::Array(OscArray { content: m.args })];
        let deeper = rosc::encoder::encode(&OscPacket::Message(m)).unwrap();
        assert_eq!(decode(&deeper).unwrap_err(), DecodeError::TooDeep);
    }

    /// Type tags `[[[…]]]` 15 000 deep: refused from the bytes, nothing deep is ever built.
    #[test]
    fn very_deep_nesting_is_refused_without_recursion() {
        const N: usize = 15_000;
        let mut tags = vec![b','];
        tags.extend(std::iter::repeat_n(b'[', N));
        tags.extend(std::iter::repeat_n(b']', N));
        let mut m = b"/chopd/op/x/par/y\0\0\0".to_vec();
        m.extend_from_slice(&tags);
        m.resize((m.len() + 4) & !3, 0);
        assert_eq!(decode(&m).unwrap_err(), DecodeError::TooDeep);
        // The same inside a bundle, and bundles 15 000 deep.
        let mut b = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        b.extend_from_slice(&(m.len() as u32).to_be_bytes());
        b.extend_from_slice(&m);
        assert_eq!(decode(&b).unwrap_err(), DecodeError::TooDeep);
        // Built outside in: level k holds an element of 8 + 20 (k - 1) bytes.
        let mut deep = Vec::with_capacity(20 * N + 8);
        for k in (1..=N).rev() {
            deep.extend_from_slice(b"#bundle\0\0\0\0\0\0\0\0\x01");
            deep.extend_from_slice(&((8 + 20 * (k - 1)) as u32).to_be_bytes());
        }
        deep.extend_from_slice(b"/x\0\0,\0\0\0");
        assert_eq!(decode(&deep).unwrap_err(), DecodeError::TooDeep);
    }

    fn framed(elements: &[&[u8]]) -> Vec<u8> {
        let mut b = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        for e in elements {
            b.extend_from_slice(&(e.len() as u32).to_be_bytes());
            b.extend_from_slice(e);
        }
        b
    }

    fn each(bytes: &[u8]) -> (Vec<String>, Result<usize, DecodeError>) {
        let mut addrs = Vec::new();
        let r = each_message(bytes, |m| addrs.push(m.addr));
        (addrs, r)
    }

    /// rosc drops every element after the first one it cannot decode.
    #[test]
    fn a_bad_bundle_element_costs_only_itself() {
        let g = |a: &str| rosc::encoder::encode(&msg(a)).unwrap();
        let b = framed(&[&g("/g1"), b"garbage!", &g("/g2")]);
        assert_eq!(each(&b), (vec!["/g1".into(), "/g2".into()], Ok(1)));
        // In a nested bundle too, with two bad elements.
        let inner = framed(&[b"\xff\xfe\0\0", &g("/b"), b"nope"]);
        let b = framed(&[&g("/a"), &inner, &g("/c")]);
        assert_eq!(
            each(&b),
            (vec!["/a".into(), "/b".into(), "/c".into()], Ok(2))
        );
        // What `messages` sees of the same bundle agrees where rosc gets it right.
        let ok = rosc::encoder::encode(&bundle(vec![msg("/a"), bundle(vec![msg("/b")])])).unwrap();
        assert_eq!(each(&ok), (vec!["/a".into(), "/b".into()], Ok(0)));
    }

    /// Every truncation and single-byte change of a nested bundle with a bad element: the walk
    /// indexes only what `check` accepted.
    #[test]
    fn each_message_survives_every_truncation_and_byte_change() {
        let g = |a: &str| rosc::encoder::encode(&msg(a)).unwrap();
        let inner = framed(&[&g("/b"), b"garbage!"]);
        let b = framed(&[&g("/a"), &inner, &g("/c")]);
        for n in 0..=b.len() {
            let _ = each_message(&b[..n], |_| {});
        }
        for i in 0..b.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0x80, 0xff, b'#', b'['] {
                let mut m = b.clone();
                m[i] = v;
                let _ = each_message(&m, |_| {});
            }
        }
    }

    #[test]
    fn a_lone_message_and_bad_framing() {
        let m = rosc::encoder::encode(&msg("/x")).unwrap();
        assert_eq!(each(&m), (vec!["/x".into()], Ok(0)));
        assert_eq!(each(b"garbage!"), (vec![], Ok(1)));
        assert_eq!(each(b""), (vec![], Ok(1)));
        assert_eq!(each(b"#bundle\0").1, Err(DecodeError::Framing));
        // An empty bundle holds nothing, and nothing is bad about it.
        assert_eq!(each(&framed(&[])), (vec![], Ok(0)));
        let mut deep = msg("/x");
        for _ in 0..=MAX_DEPTH {
            deep = bundle(vec![deep]);
        }
        let deep = rosc::encoder::encode(&deep).unwrap();
        assert_eq!(each(&deep).1, Err(DecodeError::TooDeep));
    }

    #[test]
    fn messages_carry_their_innermost_bundles_time_tag() {
        let tagged = |t: u64, content| {
            OscPacket::Bundle(OscBundle {
                timetag: OscTime::from(((t >> 32) as u32, t as u32)),
                content,
            })
        };
        let p = tagged(
            5 << 32,
            vec![msg("/a"), tagged(7 << 32, vec![msg("/b")]), msg("/c")],
        );
        let mut got = Vec::new();
        each_timed_message(&rosc::encoder::encode(&p).unwrap(), |m, t| {
            got.push((m.addr, t >> 32))
        })
        .unwrap();
        assert_eq!(got, [("/a".into(), 5), ("/b".into(), 7), ("/c".into(), 5)]);
        let bare = rosc::encoder::encode(&msg("/x")).unwrap();
        each_timed_message(&bare, |_, t| assert_eq!(t, IMMEDIATELY)).unwrap();
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1500);
        assert_eq!(tag_time(ntp_time(t)), Some(t));
        assert_eq!(tag_time(IMMEDIATELY), None);
    }

    #[test]
    fn type_names_say_what_not_which() {
        let a = OscType::Array(OscArray {
            content: vec![OscType::Nil],
        });
        assert_eq!(type_name(&a), "an array");
        assert_eq!(type_name(&OscType::Nil), "nil");
    }
}
