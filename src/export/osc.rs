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
    /// `type = "midi"` destinations (`export::midi`).
    pub midi: super::midi::MidiDestinations,
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

/// Destinations resolved for a reload, not yet in use (see [`Destinations::replace`]).
pub struct Resolved(Vec<Dest>);

/// What a reload does to the destinations, by name; `remap` turns the index of a running
/// destination into its index in the new list, or `None` when the exports cached for it must
/// be resolved afresh and sent again: it is gone, or it is another receiver (host, port) or
/// reads another number format.
#[derive(Debug, Default, PartialEq)]
pub struct DestinationsDiff {
    pub kept: Vec<String>,
    /// Each with its changes, as `prefix /show → /stage`.
    pub changed: Vec<(String, Vec<String>)>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub remap: Vec<Option<usize>>,
    /// A kept destination has another index (one was added or removed before it).
    pub moved: bool,
}

impl DestinationsDiff {
    /// True when every cached export target is still right as it is.
    pub fn is_unchanged(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty() && !self.moved
    }

    /// For the reload's `changed`: `destination b: prefix /show → /stage`, `added destination
    /// a`, `removed destination a`.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, changes) in &self.changed {
            out.push(format!("destination {name}: {}", changes.join(", ")));
        }
        out.extend(self.added.iter().map(|n| format!("added destination {n}")));
        out.extend(
            self.removed
                .iter()
                .map(|n| format!("removed destination {n}")),
        );
        out
    }
}

/// The settings of one destination that differ, as `key old → new`.
fn changes(old: &Destination, new: &Destination) -> Vec<String> {
    fn shown(s: &str) -> &str {
        if s.is_empty() {
            "\"\""
        } else {
            s
        }
    }
    let mut out = Vec::new();
    let mut diff = |key: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{key} {a} → {b}"));
        }
    };
    diff("host", old.host.clone(), new.host.clone());
    diff("port", old.port.to_string(), new.port.to_string());
    diff(
        "prefix",
        shown(&old.prefix).to_string(),
        shown(&new.prefix).to_string(),
    );
    diff(
        "format",
        format!("{:?}", old.format).to_lowercase(),
        format!("{:?}", new.format).to_lowercase(),
    );
    diff(
        "max_packet",
        old.max_packet.to_string(),
        new.max_packet.to_string(),
    );
    diff("timetag", old.timetag.to_string(), new.timetag.to_string());
    diff(
        "resend_ms",
        old.resend
            .map_or("off".into(), |d| d.as_millis().to_string()),
        new.resend
            .map_or("off".into(), |d| d.as_millis().to_string()),
    );
    out
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
        Ok(Destinations {
            socket,
            list: Destinations::resolve(list)?.0,
            midi: Default::default(),
            packets_out: 0,
            messages_out: 0,
            send_errors: 0,
        })
    }

    /// Resolves the destinations of a new config, touching nothing that runs: a name that does
    /// not resolve fails the reload before any operator is rebuilt.
    pub fn resolve(list: &[Destination]) -> Result<Resolved, String> {
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
        Ok(Resolved(out))
    }

    /// What taking `new` would change, by name.
    pub fn diff(&self, new: &Resolved) -> DestinationsDiff {
        let mut diff = DestinationsDiff {
            remap: vec![None; self.list.len()],
            ..DestinationsDiff::default()
        };
        for (i, d) in new.0.iter().enumerate() {
            let Some(j) = self.list.iter().position(|o| o.cfg.name == d.cfg.name) else {
                diff.added.push(d.cfg.name.clone());
                continue;
            };
            let old = &self.list[j];
            let changes = changes(&old.cfg, &d.cfg);
            if changes.is_empty() {
                diff.kept.push(d.cfg.name.clone());
            } else {
                diff.changed.push((d.cfg.name.clone(), changes));
            }
            // The receiver has our values if it is the same one and reads them alike.
            let same_receiver = old.addr == d.addr && old.cfg.format == d.cfg.format;
            diff.moved |= i != j;
            diff.remap[j] = same_receiver.then_some(i);
        }
        for o in &self.list {
            if !new.0.iter().any(|d| d.cfg.name == o.cfg.name) {
                diff.removed.push(o.cfg.name.clone());
            }
        }
        diff
    }

    /// Takes the destinations of a reloaded config. The socket stays (and with it the local
    /// port the feedback guard knows, and the counters); only the list changes. Called between
    /// frames, when nothing is queued.
    pub fn replace(&mut self, new: Resolved) {
        self.list = new.0;
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
        self.midi.flush();
        let Destinations {
            socket,
            list,
            packets_out,
            messages_out,
            send_errors,
            ..
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
