//! OSC output: the configured destinations, the messages queued for each during a frame, and
//! the flush that sends them, packed by [`crate::osc::Packer`] into bundles no larger than
//! `max_packet`. Values are encoded by hand as they are queued, so a frame allocates nothing
//! once the buffers have grown.
//!
//! A destination is reached over UDP from the one shared socket, over UDP to a multicast group
//! from a socket of its own (its TTL and interface), or over TCP through a [`TcpLink`] whose
//! thread owns the connection. Keep-alive messages go out on their period from here.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use rosc::OscMessage;

use super::tcp::TcpLink;
use crate::config::{Destination, Keepalive, NumFormat, Transport};
use crate::cook::OscOutgoing;
use crate::osc::framing::{self, Framing};
use crate::osc::{self, Arg, Lone, Packer};

pub struct Destinations {
    socket: UdpSocket,
    list: Vec<Dest>,
    /// `type = "midi"` destinations, when the graph handed them in.
    pub midi: Option<Box<dyn super::MidiSink>>,
    pub packets_out: u64,
    pub messages_out: u64,
    pub send_errors: u64,
}

struct Dest {
    cfg: Destination,
    addr: SocketAddr,
    /// The messages of this frame.
    out: Packer,
    /// A multicast socket or a TCP connection, made on the first flush (a resolved list may
    /// never be used: a reload that fails); UDP needs none.
    link: Option<Link>,
    /// When each keep-alive is next due (`None`: at the next flush).
    keepalive_due: Vec<Option<Instant>>,
    /// Connections the TCP link made, as last seen: exports resend everything when it moves.
    epoch: u64,
    /// Packets a script made (`sendOSC` bundles, `sendBytes`), sent on their own.
    packets: Vec<Vec<u8>>,
}

enum Link {
    Multicast(UdpSocket),
    Tcp(TcpLink),
    /// Making the link failed; logged once, retried on reload.
    Failed,
}

/// What the daemon's Info CHOP and status show of the destinations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkTotals {
    /// TCP destinations not connected now.
    pub down: u64,
    /// Outages of TCP destinations (connections lost, or never made).
    pub outages: u64,
    /// Messages dropped because a TCP destination was down or not reading.
    pub dropped: u64,
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
        "transport",
        transport(&old.transport),
        transport(&new.transport),
    );
    let keepalive = |k: &[Keepalive]| {
        let list: Vec<String> = k
            .iter()
            .map(|k| format!("{} every {:?}", k.address, k.every))
            .collect();
        format!("[{}]", list.join(", "))
    };
    diff(
        "keepalive",
        keepalive(&old.keepalive),
        keepalive(&new.keepalive),
    );
    diff(
        "resend_ms",
        old.resend
            .map_or("off".into(), |d| d.as_millis().to_string()),
        new.resend
            .map_or("off".into(), |d| d.as_millis().to_string()),
    );
    out
}

/// A transport as a reload's notes name it: `udp`, `tcp/slip`, `multicast ttl 1`.
fn transport(t: &Transport) -> String {
    match t {
        Transport::Udp => "udp".into(),
        Transport::Tcp(f) => format!("tcp/{}", f.token()),
        Transport::Multicast { ttl, interface } => format!("multicast ttl {ttl} via {interface}"),
    }
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
                link: None,
                keepalive_due: vec![None; d.keepalive.len()],
                epoch: 0,
                packets: Vec::new(),
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
            let same_receiver = old.addr == d.addr
                && old.cfg.format == d.cfg.format
                && old.cfg.transport == d.cfg.transport;
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
        let mut old = std::mem::replace(&mut self.list, new.0);
        // A destination reached the same way keeps its connection and its keep-alive times.
        for d in &mut self.list {
            if let Some(o) = old.iter_mut().find(|o| {
                o.cfg.name == d.cfg.name
                    && o.addr == d.addr
                    && o.cfg.transport == d.cfg.transport
                    && o.cfg.keepalive == d.cfg.keepalive
            }) {
                d.link = o.link.take();
                d.keepalive_due = std::mem::take(&mut o.keepalive_due);
                d.epoch = o.epoch;
            }
        }
    }

    /// How many TCP connections destination `dest` has made: an export resends every value to
    /// it when this moves, so a receiver that reconnects gets the current state.
    pub fn epoch(&self, dest: usize) -> u64 {
        self.list[dest].epoch
    }

    /// The TCP destinations' state, summed.
    pub fn link_totals(&self) -> LinkTotals {
        let mut t = LinkTotals::default();
        for d in &self.list {
            if let Some(Link::Tcp(l)) = &d.link {
                t.down += u64::from(!l.state.connected.load(Relaxed));
                t.outages += l.state.outages.load(Relaxed);
                t.dropped += l.state.dropped.load(Relaxed);
            }
        }
        t
    }

    /// The UDP port every export leaves from (the feedback guard recognises it).
    pub fn local_port(&self) -> u16 {
        self.socket.local_addr().map_or(0, |a| a.port())
    }

    /// How many destinations there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
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

    /// Queues what a script sends to destination `name` for this frame's flush: a message
    /// packed with the exports, a packet on its own. A name no longer configured (a reload
    /// took it away) drops it.
    pub fn send_out(&mut self, name: &str, item: OscOutgoing) {
        let Some(d) = self.list.iter_mut().find(|d| d.cfg.name == name) else {
            tracing::debug!(
                destination = name,
                "no such destination: a script's OSC is dropped"
            );
            return;
        };
        match item {
            OscOutgoing::Message(m) => d.out.push_message(m),
            OscOutgoing::Packet(p) => d.packets.push(p),
        }
    }

    /// Sends everything queued: a lone message as itself, several packed into bundles of at
    /// most `max_packet` bytes (a message too big for any bundle goes alone). Keep-alives that
    /// are due go first, scripts' own packets last.
    pub fn flush(&mut self) {
        let now = SystemTime::now();
        if let Some(m) = self.midi.as_mut() {
            m.flush();
        }
        let mono = Instant::now();
        let Destinations {
            socket,
            list,
            packets_out,
            messages_out,
            send_errors,
            ..
        } = self;
        for d in list {
            if d.link.is_none() && d.cfg.transport != Transport::Udp {
                d.link = Some(d.open());
            }
            if let Some(Link::Tcp(l)) = &d.link {
                d.epoch = l.state.connects();
            }
            d.queue_keepalives(mono);
            if d.out.is_empty() && d.packets.is_empty() {
                continue;
            }
            let (timetag, lone) = if d.cfg.timetag {
                (osc::ntp_time(now), Lone::Bundled)
            } else {
                (osc::IMMEDIATELY, Lone::Bare)
            };
            let (name, addr) = (&d.cfg.name, d.addr);
            let mut fail = |e: std::io::Error| {
                *send_errors += 1;
                if send_errors.is_power_of_two() {
                    tracing::warn!(
                        "send to destination \"{name}\" ({addr}): {e} ({send_errors} send errors so far)",
                    );
                }
            };
            match &d.link {
                Some(Link::Tcp(link)) => {
                    let Transport::Tcp(framing) = d.cfg.transport else {
                        unreachable!("a TCP link is made for TCP destinations only")
                    };
                    let mut bytes = Vec::new();
                    let (mut packets, mut messages) = (0, 0);
                    d.out.drain(timetag, lone, |packet, n| {
                        framing::encode(framing, packet, &mut bytes);
                        packets += 1;
                        messages += n;
                    });
                    for p in d.packets.drain(..) {
                        framing::encode(framing, &p, &mut bytes);
                        packets += 1;
                        messages += 1;
                    }
                    if link.send(bytes, messages) {
                        *packets_out += packets;
                        *messages_out += messages as u64;
                    }
                }
                Some(Link::Failed) => {
                    d.packets.clear();
                    d.out.drain(timetag, lone, |_, _| {});
                }
                link => {
                    let sock = match link {
                        Some(Link::Multicast(s)) => s,
                        _ => &*socket,
                    };
                    d.out.drain(timetag, lone, |packet, n| {
                        match sock.send_to(packet, addr) {
                            Ok(_) => {
                                *packets_out += 1;
                                *messages_out += n as u64;
                            }
                            Err(e) => fail(e),
                        }
                    });
                    for p in d.packets.drain(..) {
                        match sock.send_to(&p, addr) {
                            Ok(_) => {
                                *packets_out += 1;
                                *messages_out += 1;
                            }
                            Err(e) => fail(e),
                        }
                    }
                }
            }
        }
    }
}

impl Dest {
    /// Opens the multicast socket or starts the TCP link; a failure is logged and leaves the
    /// destination silent until a reload.
    fn open(&self) -> Link {
        let made = match self.cfg.transport {
            Transport::Udp => unreachable!("UDP destinations share the daemon's socket"),
            Transport::Multicast { ttl, interface } => {
                multicast_socket(ttl, interface).map(Link::Multicast)
            }
            Transport::Tcp(framing) => TcpLink::start(
                &self.cfg.name,
                self.addr,
                hello(&self.cfg.keepalive, framing),
            )
            .map(Link::Tcp),
        };
        made.unwrap_or_else(|e| {
            tracing::error!(destination = %self.cfg.name, addr = %self.addr, "cannot open destination: {e}");
            Link::Failed
        })
    }

    /// Queues the keep-alives that are due. Over TCP they also open every connection.
    fn queue_keepalives(&mut self, now: Instant) {
        for (k, due) in self.cfg.keepalive.iter().zip(&mut self.keepalive_due) {
            if due.is_some_and(|t| now < t) {
                continue;
            }
            *due = Some(now + k.every);
            self.out.push_message(keepalive_message(k));
        }
    }
}

fn keepalive_message(k: &Keepalive) -> OscMessage {
    OscMessage {
        addr: k.address.clone(),
        args: k.args.clone(),
    }
}

/// The keep-alives, framed, as a TCP link sends them on connecting.
fn hello(list: &[Keepalive], framing: Framing) -> Vec<u8> {
    let mut out = Vec::new();
    for k in list {
        // Encoding into a Vec cannot fail.
        let packet = rosc::encoder::encode(&rosc::OscPacket::Message(keepalive_message(k)))
            .unwrap_or_default();
        framing::encode(framing, &packet, &mut out);
    }
    out
}

/// A UDP socket for sending to multicast groups: `ttl` hops, from `interface` (unspecified:
/// the kernel's route). Loopback stays on, so an OSC In of this host in the group hears it.
fn multicast_socket(ttl: u32, interface: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.set_multicast_ttl_v4(ttl)?;
    if !interface.is_unspecified() {
        let sock = socket2::SockRef::from(&s);
        sock.set_multicast_if_v4(&interface)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
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
            transport: Transport::Udp,
            keepalive: Vec::new(),
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
