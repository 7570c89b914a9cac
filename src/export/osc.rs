//! OSC output: the configured destinations, the messages queued for each during a frame, and
//! the flush that packs them into bundles no larger than `max_packet` and sends them.
//!
//! Messages are encoded by hand (address, type tag, big-endian value): a few bytes each, no
//! allocation per message once the buffers have grown, and checked against golden bytes below.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Destination, NumFormat};

/// OSC time tag meaning "immediately".
const IMMEDIATE: u64 = 1;
/// `#bundle\0` + time tag.
const BUNDLE_HEADER: usize = 16;
/// Seconds from 1900 (NTP era) to 1970 (Unix epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

pub struct Destinations {
    socket: UdpSocket,
    list: Vec<Dest>,
    pub packets_out: u64,
    pub messages_out: u64,
    pub send_errors: u64,
}

struct Dest {
    cfg: Destination,
    addr: SocketAddr,
    /// Encoded messages of this frame, back to back, and where each ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
    packet: Vec<u8>,
}

/// Something that accepts the values of one frame (lets tests and benchmarks count).
pub trait Outbox {
    fn push(&mut self, dest: usize, address: &str, value: f32);
}

impl Destinations {
    /// Resolves every destination and opens the sending socket.
    pub fn new(list: &[Destination]) -> Result<Destinations, String> {
        let socket =
            UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("open OSC output socket: {e}"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("OSC output socket: {e}"))?;
        let mut out = Vec::new();
        for d in list {
            let addr = (d.host.as_str(), d.port)
                .to_socket_addrs()
                .map_err(|e| {
                    format!(
                        "destination \"{}\": cannot resolve {}:{}: {e}",
                        d.name, d.host, d.port
                    )
                })?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| {
                    format!("destination \"{}\": {} has no IPv4 address", d.name, d.host)
                })?;
            out.push(Dest {
                cfg: d.clone(),
                addr,
                buf: Vec::new(),
                ends: Vec::new(),
                packet: Vec::with_capacity(d.max_packet),
            });
        }
        Ok(Destinations {
            socket,
            list: out,
            packets_out: 0,
            messages_out: 0,
            send_errors: 0,
        })
    }

    /// The UDP port every export leaves from (the feedback guard recognises it).
    pub fn local_port(&self) -> u16 {
        self.socket.local_addr().map_or(0, |a| a.port())
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|d| d.cfg.name == name)
    }

    pub fn prefix(&self, dest: usize) -> &str {
        &self.list[dest].cfg.prefix
    }

    pub fn addr(&self, dest: usize) -> SocketAddr {
        self.list[dest].addr
    }

    pub fn configs(&self) -> impl Iterator<Item = &Destination> {
        self.list.iter().map(|d| &d.cfg)
    }

    /// Messages queued for `dest` and not yet flushed.
    pub fn pending(&self, dest: usize) -> usize {
        self.list[dest].ends.len()
    }

    pub fn push(&mut self, dest: usize, address: &str, value: f32) {
        let d = &mut self.list[dest];
        encode_message(&mut d.buf, address, value, d.cfg.format);
        d.ends.push(d.buf.len());
    }

    /// Sends everything queued: a lone message as itself, several packed into bundles of at
    /// most `max_packet` bytes (a message too big for any bundle goes alone).
    pub fn flush(&mut self) {
        let now = SystemTime::now();
        for d in &mut self.list {
            if d.ends.is_empty() {
                continue;
            }
            let timetag = if d.cfg.timetag {
                ntp_time(now)
            } else {
                IMMEDIATE
            };
            let mut start = 0;
            let mut i = 0;
            while i < d.ends.len() {
                // Greedily take messages while the bundle stays within max_packet.
                let mut j = i;
                let mut size = BUNDLE_HEADER;
                while j < d.ends.len() {
                    let len = d.ends[j] - if j == 0 { 0 } else { d.ends[j - 1] };
                    if j > i && size + 4 + len > d.cfg.max_packet {
                        break;
                    }
                    size += 4 + len;
                    j += 1;
                }
                let end = d.ends[j - 1];
                d.packet.clear();
                if j - i == 1 && !d.cfg.timetag {
                    d.packet.extend_from_slice(&d.buf[start..end]);
                } else {
                    d.packet.extend_from_slice(b"#bundle\0");
                    d.packet.extend_from_slice(&timetag.to_be_bytes());
                    let mut s = start;
                    for k in i..j {
                        let e = d.ends[k];
                        d.packet.extend_from_slice(&((e - s) as u32).to_be_bytes());
                        d.packet.extend_from_slice(&d.buf[s..e]);
                        s = e;
                    }
                }
                match self.socket.send_to(&d.packet, d.addr) {
                    Ok(_) => {
                        self.packets_out += 1;
                        self.messages_out += (j - i) as u64;
                    }
                    Err(e) => {
                        self.send_errors += 1;
                        if self.send_errors.is_power_of_two() {
                            tracing::warn!(
                                "send to destination \"{}\" ({}): {e} ({} send errors so far)",
                                d.cfg.name,
                                d.addr,
                                self.send_errors
                            );
                        }
                    }
                }
                start = end;
                i = j;
            }
            d.buf.clear();
            d.ends.clear();
        }
    }
}

impl Outbox for Destinations {
    fn push(&mut self, dest: usize, address: &str, value: f32) {
        Destinations::push(self, dest, address, value);
    }
}

fn pad4(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// Appends one OSC message `address value` to `buf`.
pub fn encode_message(buf: &mut Vec<u8>, address: &str, value: f32, format: NumFormat) {
    let start = buf.len();
    buf.extend_from_slice(address.as_bytes());
    buf.push(0);
    // Padding is relative to the message start, which is always 4-aligned in `buf`.
    while (buf.len() - start) % 4 != 0 {
        buf.push(0);
    }
    match format {
        NumFormat::Float => {
            buf.extend_from_slice(b",f\0\0");
            buf.extend_from_slice(&value.to_be_bytes());
        }
        NumFormat::Double => {
            buf.extend_from_slice(b",d\0\0");
            buf.extend_from_slice(&(value as f64).to_be_bytes());
        }
        NumFormat::Int => {
            buf.extend_from_slice(b",i\0\0");
            buf.extend_from_slice(&(value.round() as i32).to_be_bytes());
        }
    }
    pad4(buf);
}

/// OSC (NTP) time tag for `t`.
fn ntp_time(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_float_message() {
        let mut b = Vec::new();
        encode_message(&mut b, "/show/tx", 0.5, NumFormat::Float);
        assert_eq!(b, b"/show/tx\0\0\0\0,f\0\0\x3f\x00\x00\x00");
        // It is what rosc decodes.
        let (_, p) = rosc::decoder::decode_udp(&b).unwrap();
        let rosc::OscPacket::Message(m) = p else {
            panic!("not a message")
        };
        assert_eq!(m.addr, "/show/tx");
        assert_eq!(m.args, vec![rosc::OscType::Float(0.5)]);
    }

    #[test]
    fn golden_int_and_double() {
        let mut b = Vec::new();
        encode_message(&mut b, "/a", 2.6, NumFormat::Int);
        assert_eq!(b, b"/a\0\0,i\0\0\0\0\0\x03");
        b.clear();
        encode_message(&mut b, "/abc", 1.0, NumFormat::Double);
        assert_eq!(b, b"/abc\0\0\0\0,d\0\0\x3f\xf0\0\0\0\0\0\0");
    }

    fn dest(max_packet: usize, port: u16) -> Destination {
        Destination {
            name: "d".into(),
            host: "127.0.0.1".into(),
            port,
            prefix: String::new(),
            format: NumFormat::Float,
            max_packet,
            timetag: false,
            resend: None,
        }
    }

    fn recv_all(sock: &UdpSocket) -> Vec<rosc::OscPacket> {
        sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 70000];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(rosc::decoder::decode_udp(&buf[..n]).unwrap().1);
            sock.set_read_timeout(Some(std::time::Duration::from_millis(50)))
                .unwrap();
        }
        out
    }

    #[test]
    fn bundles_respect_max_packet() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let mut d = Destinations::new(&[dest(128, port)]).unwrap();
        for i in 0..20 {
            d.push(0, &format!("/chan{i}"), i as f32);
        }
        d.flush();
        let packets = recv_all(&rx);
        let mut seen = Vec::new();
        for p in &packets {
            let rosc::OscPacket::Bundle(b) = p else {
                panic!("expected bundles")
            };
            assert!(rosc::encoder::encode(p).unwrap().len() <= 128);
            for m in &b.content {
                let rosc::OscPacket::Message(m) = m else {
                    panic!()
                };
                seen.push(m.addr.clone());
            }
        }
        assert_eq!(
            seen,
            (0..20).map(|i| format!("/chan{i}")).collect::<Vec<_>>()
        );
        assert!(packets.len() > 1);
        assert_eq!(d.messages_out, 20);
    }

    #[test]
    fn lone_message_is_sent_bare() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let mut d = Destinations::new(&[dest(1472, port)]).unwrap();
        d.push(0, "/x", 1.0);
        d.flush();
        let p = recv_all(&rx);
        assert!(matches!(&p[..], [rosc::OscPacket::Message(_)]));
    }
}
