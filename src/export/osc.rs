//! OSC output: the configured destinations, the messages queued for each during a frame, and
//! the flush that sends them, packed by [`crate::osc::Packer`] into bundles no larger than
//! `max_packet`. Values are encoded by hand as they are queued, so a frame allocates nothing
//! once the buffers have grown.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::SystemTime;

use crate::config::{Destination, NumFormat};
use crate::osc::{self, Arg, Lone, Packer};

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
    /// The messages of this frame.
    out: Packer,
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
                out: Packer::new(d.max_packet),
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
        self.list[dest].out.len()
    }

    pub fn push(&mut self, dest: usize, address: &str, value: f32) {
        let d = &mut self.list[dest];
        d.out.push(address, arg(value, d.cfg.format));
    }

    /// Sends everything queued: a lone message as itself, several packed into bundles of at
    /// most `max_packet` bytes (a message too big for any bundle goes alone).
    pub fn flush(&mut self) {
        let now = SystemTime::now();
        let Destinations {
            socket,
            list,
            packets_out,
            messages_out,
            send_errors,
        } = self;
        for d in list {
            if d.out.is_empty() {
                continue;
            }
            let (timetag, lone) = if d.cfg.timetag {
                (osc::ntp_time(now), Lone::Bundled)
            } else {
                (osc::IMMEDIATELY, Lone::Bare)
            };
            let (name, addr) = (&d.cfg.name, d.addr);
            d.out
                .drain(timetag, lone, |packet, n| match socket.send_to(packet, addr) {
                    Ok(_) => {
                        *packets_out += 1;
                        *messages_out += n as u64;
                    }
                    Err(e) => {
                        *send_errors += 1;
                        if send_errors.is_power_of_two() {
                            tracing::warn!(
                                "send to destination \"{name}\" ({addr}): {e} ({send_errors} send errors so far)",
                            );
                        }
                    }
                });
        }
    }
}

impl Outbox for Destinations {
    fn push(&mut self, dest: usize, address: &str, value: f32) {
        Destinations::push(self, dest, address, value);
    }
}

/// A value as the destination's number format has it.
fn arg(value: f32, format: NumFormat) -> Arg {
    match format {
        NumFormat::Float => Arg::Float(value),
        NumFormat::Double => Arg::Double(value as f64),
        NumFormat::Int => Arg::Int(value.round() as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(arg(2.6, NumFormat::Int), Arg::Int(3));
        assert_eq!(arg(1.0, NumFormat::Double), Arg::Double(1.0));
        assert_eq!(arg(0.5, NumFormat::Float), Arg::Float(0.5));
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
