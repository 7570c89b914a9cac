//! The control address space: what a request is, and how a packet's messages become requests
//! (the `/chopd/auth/TOKEN/` prefix stripped and judged, at most so many per packet). Pure: no
//! socket, no graph; the control port and the local socket both parse through it.

use std::time::Duration;

use rosc::{OscMessage, OscType};

use crate::cook::ParValue;
use crate::osc;

/// Longest `/chopd/debug/stall`.
const MAX_STALL: Duration = Duration::from_secs(600);

/// Every address starts with this.
pub const PREFIX: &str = "/chopd";

/// Mutating requests carry the token as the segment after this.
pub const AUTH: &str = "/chopd/auth/";

/// Requests served from one UDP packet; the rest are counted (`excess`) and refused with one
/// error. 32 covers a controller page sent as one bundle; 2,728 in one 64 kB bundle once kept
/// the port busy for 45 s.
pub const MAX_REQUESTS_PER_PACKET: usize = 32;

/// Requests served from one packet of the local socket, which only the socket's owners reach.
pub const MAX_REQUESTS_LOCAL: usize = 1024;

/// One request, parsed.
#[derive(Debug, PartialEq)]
pub enum Request {
    Ping,
    Status {
        op: Option<String>,
        json: bool,
    },
    Reload,
    Reset(String),
    SetupPars(String),
    Pulse(String, String),
    Set(String, String, ParValue),
    Stall(Duration),
    Panic,
    /// An action released (argument 0): nothing to do.
    Release,
}

impl Request {
    /// Whether it changes the show (and so needs the token, when there is one).
    pub fn mutates(&self) -> bool {
        !matches!(self, Request::Ping | Request::Status { .. })
    }
}

/// How a request presented the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No `/chopd/auth/…` prefix.
    None,
    /// The configured token (or any, when none is configured).
    Good,
    Bad,
}

/// One message of a packet: its address without the token, and what it asks.
#[derive(Debug)]
pub struct Parsed {
    pub addr: String,
    pub auth: Auth,
    pub request: Result<Request, String>,
}

/// The requests of one packet, at most the bound; the count past it.
#[derive(Debug)]
pub struct Packet {
    pub requests: Vec<Parsed>,
    pub excess: usize,
    /// The address of the first request past the bound (the one error names it).
    pub first_excess: Option<String>,
}

/// Decodes one packet and parses at most `max` of its requests: what both the UDP port and the
/// local socket serve, and what the fuzz target drives.
pub fn parse_packet(
    bytes: &[u8],
    token: Option<&str>,
    max: usize,
) -> Result<Packet, osc::DecodeError> {
    let msgs = osc::messages(osc::decode(bytes)?);
    let excess = msgs.len().saturating_sub(max);
    let first_excess = msgs.get(max).map(|m| strip_auth(&m.addr, token).0);
    let requests = msgs
        .into_iter()
        .take(max)
        .map(|mut m| {
            let (addr, auth) = strip_auth(&m.addr, token);
            m.addr = addr;
            let request = parse(&m);
            Parsed {
                addr: m.addr,
                auth,
                request,
            }
        })
        .collect();
    Ok(Packet {
        requests,
        excess,
        first_excess,
    })
}

/// `/chopd/auth/TOKEN/rest` → (`/chopd/rest`, whether TOKEN is the token). A repeated prefix
/// is stripped too (every one must hold the token), so that no address handed on, echoed in a
/// reply or logged, starts with a token.
pub(crate) fn strip_auth(addr: &str, token: Option<&str>) -> (String, Auth) {
    let mut addr = addr.to_string();
    let mut auth = Auth::None;
    while let Some(rest) = addr.strip_prefix(AUTH) {
        let (given, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let good = token.is_none_or(|t| same(t.as_bytes(), given.as_bytes()));
        auth = match (auth, good) {
            (Auth::Bad, _) | (_, false) => Auth::Bad,
            _ => Auth::Good,
        };
        addr = format!("{PREFIX}/{rest}");
    }
    (addr, auth)
}

/// Compares without stopping at the first difference, so timing does not tell how much of a
/// guess was right.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses one message of the address space.
pub fn parse(m: &OscMessage) -> Result<Request, String> {
    let Some(rest) = m.addr.strip_prefix(PREFIX) else {
        return Err(format!(
            "unknown address (every address starts with {PREFIX}/)"
        ));
    };
    let released = matches!(m.args.as_slice(), [a] if number(a) == Some(0.0));
    let action = |r: Request| if released { Request::Release } else { r };
    let name_arg = || -> Result<Option<String>, String> {
        match m.args.as_slice() {
            [] => Ok(None),
            [OscType::String(s)] => Ok(Some(s.clone())),
            _ => Err("takes no argument, or an operator name".into()),
        }
    };
    Ok(match rest {
        "/ping" => Request::Ping,
        "/status" => Request::Status {
            op: name_arg()?,
            json: false,
        },
        "/status/json" => Request::Status {
            op: name_arg()?,
            json: true,
        },
        "/reload" => action(Request::Reload),
        "/debug/panic" => Request::Panic,
        "/debug/stall" => match m.args.as_slice() {
            [a] => match number(a) {
                Some(s) if s > 0.0 && s.is_finite() => {
                    Request::Stall(Duration::from_secs_f64(s).min(MAX_STALL))
                }
                _ => return Err("takes the stall in seconds (> 0)".into()),
            },
            _ => return Err("takes the stall in seconds".into()),
        },
        _ => {
            let Some(op) = rest.strip_prefix("/op/") else {
                return Err("unknown address".into());
            };
            // NAME is an operator's key, which may hold `/` (`show/gain`): the action is read
            // from the end of the address.
            let parts: Vec<&str> = op.split('/').collect();
            let name = |n: usize| -> Option<String> {
                let head = &parts[..parts.len().saturating_sub(n)];
                (!head.is_empty() && head.iter().all(|p| !p.is_empty())).then(|| head.join("/"))
            };
            match parts.as_slice() {
                [.., "pulse", par] if !par.is_empty() && name(2).is_some() => {
                    action(Request::Pulse(name(2).unwrap_or_default(), par.to_string()))
                }
                [.., "par", par] if !par.is_empty() && name(2).is_some() => {
                    let value = match m.args.as_slice() {
                        [OscType::String(s)] => ParValue::Str(s.clone()),
                        [a] => match number(a) {
                            Some(v) if v.is_finite() => ParValue::Float(v),
                            Some(_) => return Err("the value is not finite".into()),
                            None => {
                                return Err(format!(
                                    "cannot set a parameter to {}",
                                    osc::type_name(a)
                                ))
                            }
                        },
                        _ => return Err("takes exactly one value".into()),
                    };
                    Request::Set(name(2).unwrap_or_default(), par.to_string(), value)
                }
                [.., "reset"] if name(1).is_some() => {
                    action(Request::Reset(name(1).unwrap_or_default()))
                }
                [.., "setuppars"] if name(1).is_some() => {
                    action(Request::SetupPars(name(1).unwrap_or_default()))
                }
                _ => {
                    return Err(
                        "unknown address (/chopd/op/NAME/reset, /setuppars, /pulse/PAR, /par/PAR)"
                            .into(),
                    )
                }
            }
        }
    })
}

fn number(a: &OscType) -> Option<f64> {
    Some(match a {
        OscType::Int(i) => *i as f64,
        OscType::Long(i) => *i as f64,
        OscType::Float(f) => *f as f64,
        OscType::Double(d) => *d,
        OscType::Bool(b) => f64::from(u8::from(*b)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(addr: &str, args: Vec<OscType>) -> OscMessage {
        OscMessage {
            addr: addr.to_string(),
            args,
        }
    }

    #[test]
    fn address_space() {
        use Request::*;
        let p = |a: &str, args| parse(&m(a, args));
        assert_eq!(p("/chopd/ping", vec![]), Ok(Ping));
        assert_eq!(
            p("/chopd/status", vec![]),
            Ok(Status {
                op: None,
                json: false
            })
        );
        assert_eq!(
            p("/chopd/status/json", vec![OscType::String("in".into())]),
            Ok(Status {
                op: Some("in".into()),
                json: true
            })
        );
        assert_eq!(p("/chopd/reload", vec![]), Ok(Reload));
        assert_eq!(p("/chopd/reload", vec![OscType::Int(1)]), Ok(Reload));
        assert_eq!(p("/chopd/reload", vec![OscType::Float(0.0)]), Ok(Release));
        assert_eq!(p("/chopd/op/in/reset", vec![]), Ok(Reset("in".into())));
        assert_eq!(
            p("/chopd/op/s1/setuppars", vec![]),
            Ok(SetupPars("s1".into()))
        );
        assert_eq!(
            p("/chopd/op/s1/pulse/Go", vec![OscType::Bool(true)]),
            Ok(Pulse("s1".into(), "Go".into()))
        );
        assert_eq!(
            p("/chopd/op/s1/pulse/Go", vec![OscType::Int(0)]),
            Ok(Release)
        );
        assert_eq!(
            p("/chopd/op/s1/par/Gain", vec![OscType::Int(2)]),
            Ok(Set("s1".into(), "Gain".into(), ParValue::Float(2.0)))
        );
        assert_eq!(
            p(
                "/chopd/op/s1/par/Mode",
                vec![OscType::String("fast".into())]
            ),
            Ok(Set(
                "s1".into(),
                "Mode".into(),
                ParValue::Str("fast".into())
            ))
        );
        assert_eq!(
            p("/chopd/debug/stall", vec![OscType::Float(1.5)]),
            Ok(Stall(Duration::from_millis(1500)))
        );
    }

    #[test]
    fn operators_inside_components_are_named_by_their_key() {
        use Request::*;
        let p = |a: &str, args| parse(&m(a, args)).unwrap();
        assert!(matches!(
            p("/chopd/op/show/gain/par/Gain", vec![OscType::Float(1.0)]),
            Set(o, par, ParValue::Float(_)) if o == "show/gain" && par == "Gain"
        ));
        assert!(matches!(
            p("/chopd/op/show/cue/pulse/Go", vec![]),
            Pulse(o, par) if o == "show/cue" && par == "Go"
        ));
        assert!(matches!(p("/chopd/op/show/gain/reset", vec![]), Reset(o) if o == "show/gain"));
        assert!(parse(&m("/chopd/op//gain/reset", vec![])).is_err());
        assert!(parse(&m("/chopd/op/par/X", vec![OscType::Float(1.0)])).is_err());
    }

    #[test]
    fn bad_requests_say_why() {
        let p = |a: &str, args| parse(&m(a, args)).unwrap_err();
        assert!(p("/other", vec![]).contains("starts with /chopd/"));
        assert!(p("/chopd/nope", vec![]).contains("unknown address"));
        assert!(p("/chopd/op/x/explode", vec![]).contains("unknown address"));
        assert!(p("/chopd/op//reset", vec![]).contains("unknown address"));
        assert!(p("/chopd/op/x/par/Gain", vec![]).contains("exactly one value"));
        assert!(p("/chopd/op/x/par/Gain", vec![OscType::Nil]).contains("cannot set"));
        assert!(p("/chopd/op/x/par/Gain", vec![OscType::Float(f32::NAN)]).contains("finite"));
        assert!(p("/chopd/status", vec![OscType::Int(3)]).contains("operator name"));
        assert!(p("/chopd/debug/stall", vec![OscType::Int(-1)]).contains("seconds"));
    }

    #[test]
    fn the_token_is_one_address_segment_and_never_kept() {
        let t = Some("0123456789abcdef");
        assert_eq!(
            strip_auth("/chopd/auth/0123456789abcdef/op/x/reset", t),
            ("/chopd/op/x/reset".to_string(), Auth::Good)
        );
        assert_eq!(
            strip_auth("/chopd/auth/0123456789abcdeF/op/x/reset", t).1,
            Auth::Bad
        );
        assert_eq!(strip_auth("/chopd/auth/0123456789abcdef", t).1, Auth::Good);
        assert_eq!(strip_auth("/chopd/op/x/reset", t).1, Auth::None);
        let twice = "/chopd/auth/0123456789abcdef/auth/0123456789abcdef/ping";
        assert_eq!(
            strip_auth(twice, t),
            ("/chopd/ping".to_string(), Auth::Good)
        );
        let bad_inside = "/chopd/auth/0123456789abcdef/auth/guess/ping";
        assert_eq!(strip_auth(bad_inside, t).1, Auth::Bad);
        assert!(Request::Reset("x".into()).mutates());
        assert!(Request::Release.mutates());
        assert!(!Request::Ping.mutates());
    }

    #[test]
    fn a_packet_yields_at_most_its_bound() {
        let one = rosc::OscPacket::Message(m("/chopd/ping", vec![]));
        let bundle = rosc::OscPacket::Bundle(rosc::OscBundle {
            timetag: rosc::OscTime::from((0, 1)),
            content: vec![one; 40],
        });
        let bytes = rosc::encoder::encode(&bundle).unwrap();
        let p = parse_packet(&bytes, None, MAX_REQUESTS_PER_PACKET).unwrap();
        assert_eq!(p.requests.len(), MAX_REQUESTS_PER_PACKET);
        assert_eq!(p.excess, 40 - MAX_REQUESTS_PER_PACKET);
        assert_eq!(p.first_excess.as_deref(), Some("/chopd/ping"));
    }
}
