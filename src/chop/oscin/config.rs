//! OSC In's config: its keys as written, their checks, and the build of the operator.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;
use toml::Spanned;

use super::tcp::DEFAULT_MAX_CLIENTS;
use super::OscInOp;
use crate::config::{Bounds, Checker, Cidr, Kind, OperatorConfig, OscFraming, OscProtocol, Settings};
use crate::config::refs::OpRefs;
use crate::cook::{BuildCtx, Operator};
use crate::osc::framing::Framing;
use crate::pattern::Pattern;

/// The OSC In kind.
pub struct OscIn;

/// 4 MiB: `net.core.rmem_max` on the machines measured; an 8 MB buffer lost nothing at
/// 400k packets/s there, the kernel's default of about 208 KB did. (docs/platform.md)
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;
pub const DEFAULT_MAX_CHANNELS: usize = 10_000;
pub const STRIP_SEGMENTS: Bounds = Bounds::new(0, 64);
pub const RECEIVE_BUFFER: Bounds = Bounds::new(4096, 1 << 30);
pub const MAX_CHANNELS: Bounds = Bounds::new(1, 1_000_000);
/// Longest OSC address taken, bytes. Real addresses are tens of bytes; 1 KiB leaves room for
/// generated ones and keeps a hostile one from costing more than that.
pub const DEFAULT_MAX_ADDRESS_LENGTH: usize = 1024;
/// No address in a UDP datagram is longer than 64 KiB.
pub const MAX_ADDRESS_LENGTH: Bounds = Bounds::new(16, 65_536);
/// The default `max_name_bytes` is `max_channels` names of this many bytes: a generous typical
/// name (`mixer/channel12/fader_2` is 23).
pub const TYPICAL_NAME_BYTES: usize = 64;
pub const MAX_NAME_BYTES: Bounds = Bounds::new(1024, 1 << 30);
pub const MAX_CLIENTS: Bounds = Bounds::new(1, 4096);
/// `bundle_window_ms`: off, or up to 10 s of scheduling ahead.
pub const BUNDLE_WINDOW_MS: Bounds = Bounds::new(0, 10_000);

/// How an OSC In receives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Protocol {
    Udp,
    Tcp(Framing),
}

/// The keys of an `oscin` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// UDP (or with protocol = "tcp", TCP) port (0 = any free port)
    #[schemars(with = "u16")]
    pub port: Spanned<u16>,
    /// "udp" (default) or "tcp"
    pub protocol: Option<OscProtocol>,
    /// With protocol = "tcp": "slip" (OSC 1.1, default) or "size" (OSC 1.0)
    #[schemars(with = "Option<OscFraming>")]
    pub framing: Option<Spanned<OscFraming>>,
    /// With protocol = "tcp": most clients connected at once (default 64)
    #[schemars(with = "Option<i64>", range(min = MAX_CLIENTS.min, max = MAX_CLIENTS.max))]
    pub max_clients: Option<Spanned<i64>>,
    /// Address to listen on (default: all, IPv4 and IPv6)
    #[schemars(with = "Option<String>")]
    pub local_address: Option<Spanned<String>>,
    /// IPv4 multicast group to join
    #[schemars(with = "Option<String>")]
    pub multicast: Option<Spanned<String>>,
    /// Interface address to join the group on
    #[schemars(with = "Option<String>")]
    pub multicast_interface: Option<Spanned<String>>,
    /// Pattern on the OSC address: which messages to keep
    #[schemars(with = "Option<String>")]
    pub address_scope: Option<Spanned<String>>,
    /// Leading address segments removed from channel names
    #[schemars(with = "Option<i64>", range(min = STRIP_SEGMENTS.min, max = STRIP_SEGMENTS.max))]
    pub strip_segments: Option<Spanned<i64>>,
    /// With timeslice: every message becomes a sample
    pub queued: Option<bool>,
    /// Source networks allowed to send (CIDR); others are dropped
    #[schemars(with = "Option<Vec<String>>")]
    pub allow: Option<Vec<Spanned<String>>>,
    /// SO_RCVBUF requested, bytes
    #[schemars(with = "Option<i64>", range(min = RECEIVE_BUFFER.min, max = RECEIVE_BUFFER.max))]
    pub receive_buffer: Option<Spanned<i64>>,
    /// Most channels this operator creates
    #[schemars(with = "Option<i64>", range(min = MAX_CHANNELS.min, max = MAX_CHANNELS.max))]
    pub max_channels: Option<Spanned<i64>>,
    /// Longest OSC address taken, bytes (longer ones are dropped and counted)
    #[schemars(with = "Option<i64>", range(min = MAX_ADDRESS_LENGTH.min, max = MAX_ADDRESS_LENGTH.max))]
    pub max_address_length: Option<Spanned<i64>>,
    /// Hold messages of bundles time-tagged up to this far ahead until their time, ms (default 0: off; tags further ahead count as timetag_skew and apply at once)
    #[schemars(with = "Option<i64>", range(min = BUNDLE_WINDOW_MS.min, max = BUNDLE_WINDOW_MS.max))]
    pub bundle_window_ms: Option<Spanned<i64>>,
    /// Most bytes of channel names this operator holds (default: max_channels × 64)
    #[schemars(with = "Option<i64>", range(min = MAX_NAME_BYTES.min, max = MAX_NAME_BYTES.max))]
    pub max_name_bytes: Option<Spanned<i64>>,
}

/// The checked settings of an OSC In.
#[derive(Clone, Debug, PartialEq)]
pub struct OscInConfig {
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// With TCP: most clients at once.
    pub max_clients: usize,
    pub multicast: Option<(Ipv4Addr, Ipv4Addr)>,
    pub address_scope: Pattern,
    pub strip_segments: usize,
    pub queued: bool,
    pub allow: Vec<Cidr>,
    /// Receive buffer requested with SO_RCVBUF, bytes.
    pub receive_buffer: usize,
    pub max_channels: usize,
    /// Longest OSC address taken, bytes.
    pub max_address_length: usize,
    /// Most bytes of channel names held at once.
    pub max_name_bytes: usize,
    /// Zero: time tags are not honoured.
    pub bundle_window: std::time::Duration,
}

impl Kind for OscIn {
    const NAME: &'static str = "oscin";
    const SUMMARY: &'static str = "OSC In: UDP traffic → channels";
    type Raw = Raw;
    type Settings = OscInConfig;

    fn check(cx: &mut Checker, r: Raw, refs: &mut OpRefs) -> Option<OscInConfig> {
        refs.binds_port(r.port.span());
        let ip = match &r.local_address {
            Some(a) => cx.ip(a)?,
            // Dual-stack by default: `oscsend localhost …` may arrive over IPv6.
            None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let multicast = match &r.multicast {
            Some(g) => match g.get_ref().parse::<Ipv4Addr>() {
                Ok(group) if group.is_multicast() => {
                    let iface = match &r.multicast_interface {
                        Some(i) => match i.get_ref().parse::<Ipv4Addr>() {
                            Ok(a) => a,
                            Err(_) => {
                                cx.d.error(
                                    i.span(),
                                    format!("\"{}\" is not an IPv4 address", i.get_ref()),
                                );
                                return None;
                            }
                        },
                        None => Ipv4Addr::UNSPECIFIED,
                    };
                    Some((group, iface))
                }
                _ => {
                    cx.d.error(
                        g.span(),
                        format!(
                            "\"{}\" is not an IPv4 multicast group (224.0.0.0/4)",
                            g.get_ref()
                        ),
                    );
                    return None;
                }
            },
            None => None,
        };
        // A bad field is reported and replaced by its default, so the operator still takes part
        // in the whole-graph checks (ports, names); the config is rejected anyway.
        let address_scope = r
            .address_scope
            .as_ref()
            .and_then(|s| cx.pattern(s))
            .unwrap_or_else(Pattern::all);
        let strip_segments = cx.ranged_or(&r.strip_segments, "strip_segments", STRIP_SEGMENTS, 0) as usize;
        let receive_buffer = cx.ranged_or(
            &r.receive_buffer,
            "receive_buffer",
            RECEIVE_BUFFER,
            DEFAULT_RECEIVE_BUFFER as i64,
        ) as usize;
        let max_channels = cx.ranged_or(
            &r.max_channels,
            "max_channels",
            MAX_CHANNELS,
            DEFAULT_MAX_CHANNELS as i64,
        ) as usize;
        let max_address_length = cx.ranged_or(
            &r.max_address_length,
            "max_address_length",
            MAX_ADDRESS_LENGTH,
            DEFAULT_MAX_ADDRESS_LENGTH as i64,
        ) as usize;
        let default_name_bytes = (max_channels * TYPICAL_NAME_BYTES)
            .clamp(MAX_NAME_BYTES.min as usize, MAX_NAME_BYTES.max as usize);
        let max_name_bytes = cx.ranged_or(
            &r.max_name_bytes,
            "max_name_bytes",
            MAX_NAME_BYTES,
            default_name_bytes as i64,
        ) as usize;
        let protocol = match r.protocol.unwrap_or(OscProtocol::Udp) {
            OscProtocol::Udp => {
                if let Some(f) = &r.framing {
                    cx.d.error(f.span(), "framing applies to protocol = \"tcp\" only");
                }
                if let Some(m) = &r.max_clients {
                    cx.d.error(m.span(), "max_clients applies to protocol = \"tcp\" only");
                }
                Protocol::Udp
            }
            OscProtocol::Tcp => {
                if let Some(m) = &r.multicast {
                    cx.d.error(m.span(), "multicast needs protocol = \"udp\"");
                }
                Protocol::Tcp(r.framing.as_ref().map_or(Framing::Slip, |f| (*f.get_ref()).into()))
            }
        };
        let max_clients = cx.ranged_or(
            &r.max_clients,
            "max_clients",
            MAX_CLIENTS,
            DEFAULT_MAX_CLIENTS as i64,
        ) as usize;
        let bundle_window = std::time::Duration::from_millis(
            cx.ranged_or(&r.bundle_window_ms, "bundle_window_ms", BUNDLE_WINDOW_MS, 0) as u64,
        );
        Some(OscInConfig {
            bind: SocketAddr::new(ip, *r.port.get_ref()),
            bundle_window,
            protocol,
            max_clients,
            multicast,
            address_scope,
            strip_segments,
            queued: r.queued.unwrap_or(false),
            allow: r
                .allow
                .as_deref()
                .map(|l| cx.cidrs(l))
                .unwrap_or_default(),
            receive_buffer,
            max_channels,
            max_address_length,
            max_name_bytes,
        })
    }
}

impl Settings for OscInConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(OscInOp::new(
            op,
            self,
            cx.own_port.clone(),
            cx.max_slice,
            cx.wake.clone(),
        )?))
    }

    fn udp_port(&self) -> Option<u16> {
        Some(self.bind.port())
    }
}
