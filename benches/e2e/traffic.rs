//! Traffic: a paced sender (absolute deadlines) and a receiver that records every exported value
//! with its arrival time.
//!
//! Message `i` of a run goes to channel `i % channels` and carries that channel's sequence
//! number `i / channels` as its float value (exact up to 2^24), so a received value names the
//! message it came from. Times are nanoseconds since one `Instant` shared by both threads.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::chopd::osc::framing::{self, Framing};
use rosc::{OscPacket, OscType};

/// Largest sequence number a float carries exactly.
pub const MAX_SEQ: usize = 1 << 24;

/// Something that can put messages `range` on the wire (one packet per call). OSC over UDP or
/// TCP today; a MIDI source would implement the same.
pub trait Load: Send {
    fn send(&mut self, range: Range<usize>) -> std::io::Result<()>;
}

/// OSC to chopd's `oscin`: `/bench/cK f SEQ`, bare when one message per packet, else one bundle;
/// over TCP each packet SLIP-framed on one connection.
pub struct OscLoad {
    wire: Wire,
    /// Per channel: the address, NUL-padded to 4 bytes, followed by the `,f` type tag.
    heads: Vec<Vec<u8>>,
    channels: usize,
    buf: Vec<u8>,
}

enum Wire {
    Udp(UdpSocket),
    /// The stream and the framed bytes of the packet being sent.
    Tcp(TcpStream, Vec<u8>),
}

impl OscLoad {
    pub fn new(port: u16, channels: usize, tcp: bool) -> std::io::Result<OscLoad> {
        let wire = if tcp {
            let s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_nodelay(true)?;
            Wire::Tcp(s, Vec::with_capacity(65_536))
        } else {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(("127.0.0.1", port))?;
            Wire::Udp(socket)
        };
        let heads = (0..channels)
            .map(|c| {
                let mut h = format!("/bench/c{c}").into_bytes();
                h.push(0);
                while h.len() % 4 != 0 {
                    h.push(0);
                }
                h.extend_from_slice(b",f\0\0");
                h
            })
            .collect();
        Ok(OscLoad {
            wire,
            heads,
            channels,
            buf: Vec::with_capacity(65_536),
        })
    }
}

impl Load for OscLoad {
    fn send(&mut self, range: Range<usize>) -> std::io::Result<()> {
        self.buf.clear();
        let bundle = range.len() > 1;
        if bundle {
            self.buf.extend_from_slice(b"#bundle\0");
            self.buf.extend_from_slice(&1u64.to_be_bytes());
        }
        for i in range {
            let head = &self.heads[i % self.channels];
            let seq = (i / self.channels) as f32;
            if bundle {
                self.buf
                    .extend_from_slice(&((head.len() + 4) as u32).to_be_bytes());
            }
            self.buf.extend_from_slice(head);
            self.buf.extend_from_slice(&seq.to_be_bytes());
        }
        match &mut self.wire {
            Wire::Udp(s) => s.send(&self.buf).map(|_| ()),
            Wire::Tcp(s, framed) => {
                framed.clear();
                framing::encode(Framing::Slip, &self.buf, framed);
                s.write_all(framed)
            }
        }
    }
}

/// When the messages went out.
pub struct SendLog {
    /// Send time of message i (ns since the epoch), taken just before its packet's send call.
    pub times: Vec<u64>,
    pub errors: u64,
    /// How far behind its deadline the sender got at worst, and at the 99th percentile (ns).
    pub lag_max_ns: u64,
    pub lag_p99_ns: u64,
    /// How much the schedule slipped in all (ns), see `MAX_BEHIND`.
    pub slipped_ns: u64,
}

/// How far behind its schedule the sender may fall before the schedule slips: a sender that
/// was not scheduled for 100 ms must not then fire 5000 messages in one burst (that is not the
/// load being measured, and it can overflow any receive buffer).
pub const MAX_BEHIND: Duration = Duration::from_millis(2);

/// Sends `total` messages, `batch` per packet, at `per_second` messages per second from `start`
/// on, or fewer if `until` comes first (then `times` holds only those sent). Deadlines are
/// absolute (a late wake-up is caught up, no drift) unless the sender falls more than
/// `MAX_BEHIND` behind; then the schedule slips and the slip is reported. Sleeps between
/// packets, never spins: the machine is shared with the daemon under test.
pub fn send_paced(
    load: &mut dyn Load,
    total: usize,
    batch: usize,
    per_second: f64,
    (start, until): (Instant, Option<Instant>),
    epoch: Instant,
) -> SendLog {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes plain integers and touches only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let mut times = vec![0u64; total];
    let mut lags = Vec::with_capacity(total / batch.max(1) + 1);
    let mut errors = 0;
    let mut next = 0usize;
    let mut slip = Duration::ZERO;
    while next < total {
        let due = start + slip + Duration::from_secs_f64(next as f64 / per_second);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
            continue;
        }
        if until.is_some_and(|u| now >= u) {
            break;
        }
        let behind = now.duration_since(due);
        lags.push(behind.as_nanos() as u64);
        if behind > MAX_BEHIND {
            slip += behind - MAX_BEHIND;
        }
        let end = (next + batch).min(total);
        let t = Instant::now().duration_since(epoch).as_nanos() as u64;
        if load.send(next..end).is_err() {
            errors += 1;
        }
        times[next..end].fill(t);
        next = end;
    }
    times.truncate(next);
    lags.sort_unstable();
    SendLog {
        times,
        errors,
        lag_max_ns: lags.last().copied().unwrap_or(0),
        lag_p99_ns: pick(&lags, 0.99).unwrap_or(0),
        slipped_ns: slip.as_nanos() as u64,
    }
}

/// One received bench value.
#[derive(Clone, Copy, Debug)]
pub struct Rx {
    /// Message index (`seq * channels + channel`).
    pub index: usize,
    pub t: u64,
    /// Index into `RecvLog::frames` of the export frame it came in (`u32::MAX`: before the
    /// first frame marker).
    pub frame: u32,
}

/// Everything the destination socket received.
#[derive(Default)]
pub struct RecvLog {
    pub bench: Vec<Rx>,
    /// Frame markers (Info CHOP `frame` channel of `op = "/"`): (frame number, arrival ns).
    pub frames: Vec<(i64, u64)>,
    /// Other (Info CHOP) channels: (arrival ns, name id, value); names in `names`.
    pub info: Vec<(u64, u16, f32)>,
    pub names: Vec<String>,
    pub packets: u64,
    pub malformed: u64,
    /// Bench-looking values that name no message of this run.
    pub unexpected: u64,
    /// Drops the kernel counted on the receiving socket itself (not chopd's fault).
    pub socket_drops: u64,
}

impl RecvLog {
    pub fn name_id(&self, name: &str) -> Option<u16> {
        self.names.iter().position(|n| n == name).map(|i| i as u16)
    }

    /// Values of info channel `name` as (arrival ns, value), in arrival order.
    pub fn series(&self, name: &str) -> Vec<(u64, f32)> {
        let Some(id) = self.name_id(name) else {
            return Vec::new();
        };
        self.info
            .iter()
            .filter(|e| e.1 == id)
            .map(|e| (e.0, e.2))
            .collect()
    }

    /// The last value of `name` that arrived at or before `t`.
    pub fn value_at(&self, name: &str, t: u64) -> Option<f32> {
        self.series(name)
            .into_iter()
            .take_while(|e| e.0 <= t)
            .last()
            .map(|e| e.1)
    }

    pub fn last(&self, name: &str) -> Option<f32> {
        self.series(name).last().map(|e| e.1)
    }
}

/// The destination chopd exports to.
pub struct Receiver {
    pub socket: UdpSocket,
    pub prefix: String,
    /// What the graph multiplied the sent values by (2 for the Script CHOP ×2): received bench
    /// values are divided by it before they are read as sequence numbers.
    pub scale: f32,
}

impl Receiver {
    /// Binds 127.0.0.1:0 with a large receive buffer (so the benchmark itself loses nothing).
    pub fn bind(prefix: &str) -> std::io::Result<Receiver> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_recv_buffer_size(4 << 20)?;
        s.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )?;
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(Receiver {
            socket: s.into(),
            prefix: prefix.to_string(),
            scale: 1.0,
        })
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Receives until `stop`; `channels` and `total` say which values are bench messages.
    pub fn run(
        self,
        channels: usize,
        total: usize,
        epoch: Instant,
        stop: Arc<AtomicBool>,
    ) -> RecvLog {
        // The same count chopd's OSC In reports as its `kernel_drops`.
        let drops_before = ::chopd::chop::oscin::recv::kernel_drops(&self.socket).unwrap_or(0);
        let bench_prefix = format!("{}/bench/c", self.prefix);
        let info_prefix = format!("{}/", self.prefix);
        let mut log = RecvLog::default();
        // One entry per delivered message: reserved up front so a long run (the soak) does not
        // stop receiving to copy hundreds of MB when the vector grows.
        log.bench.reserve(total);
        let mut buf = vec![0u8; 65_536];
        let mut frame = u32::MAX;
        while !stop.load(Ordering::Relaxed) {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            let t = Instant::now().duration_since(epoch).as_nanos() as u64;
            log.packets += 1;
            let Ok((_, packet)) = rosc::decoder::decode_udp(&buf[..n]) else {
                log.malformed += 1;
                continue;
            };
            let mut stack = vec![packet];
            // Depth-first in packet order: bundles are unpacked in place.
            while let Some(p) = stack.pop() {
                match p {
                    OscPacket::Bundle(b) => stack.extend(b.content.into_iter().rev()),
                    OscPacket::Message(m) => {
                        let value = match m.args.first() {
                            Some(OscType::Float(f)) => *f,
                            Some(OscType::Double(d)) => *d as f32,
                            Some(OscType::Int(i)) => *i as f32,
                            _ => continue,
                        };
                        if let Some(c) = m.addr.strip_prefix(&bench_prefix) {
                            let value = value / self.scale;
                            let c: usize = match c.parse() {
                                Ok(c) if c < channels => c,
                                _ => {
                                    log.unexpected += 1;
                                    continue;
                                }
                            };
                            if value < 0.0 || value.fract() != 0.0 {
                                log.unexpected += 1;
                                continue;
                            }
                            let index = value as usize * channels + c;
                            if index >= total {
                                log.unexpected += 1;
                                continue;
                            }
                            log.bench.push(Rx { index, t, frame });
                        } else if let Some(name) = m.addr.strip_prefix(&info_prefix) {
                            if name == "frame" {
                                log.frames.push((value as i64, t));
                                frame = (log.frames.len() - 1) as u32;
                            }
                            let id = match log.name_id(name) {
                                Some(id) => id,
                                None => {
                                    log.names.push(name.to_string());
                                    (log.names.len() - 1) as u16
                                }
                            };
                            log.info.push((t, id, value));
                        }
                    }
                }
            }
        }
        log.socket_drops = ::chopd::chop::oscin::recv::kernel_drops(&self.socket)
            .unwrap_or(0)
            .saturating_sub(drops_before);
        log
    }
}

/// Nearest-rank percentile of sorted values.
pub fn pick<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}
