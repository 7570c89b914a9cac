//! `chopd ctl`: a command-line client of the control port, so a technician on SSH needs no OSC
//! tool to see each operator's state or to reload, reset, pulse and set. Speaks the address
//! space of [`super::control`] over plain blocking UDP; prints replies for people, the status
//! as [`super::status::Status`] reads it back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};

use super::control::PREFIX;
use super::status::Status;
use crate::osc;

pub const USAGE: &str = "\
usage: chopd ctl TARGET REQUEST
  TARGET   a config file (its [control] port), a port on 127.0.0.1, or HOST:PORT
  REQUEST  ping | status [NAME] | json [NAME] | reload | reset NAME | setuppars NAME
           | pulse NAME PAR | set NAME PAR VALUE";

/// How long to wait for an answer; a reload may run set-up code, so it gets longer.
const WAIT: Duration = Duration::from_secs(5);
const WAIT_RELOAD: Duration = Duration::from_secs(35);

/// A failed `ctl`: usage (exit 2) or the request failed (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// Runs `chopd ctl` with the arguments after `ctl`; returns what to print.
pub fn run(args: &[&str]) -> Result<String, CtlError> {
    if matches!(args, ["--help" | "-h" | "help"]) {
        return Ok(USAGE.to_string());
    }
    let [target, request @ ..] = args else {
        return Err(CtlError::Usage("missing TARGET".into()));
    };
    let to = target_addr(target)?;
    let (addr, osc_args, wait): (String, Vec<OscType>, Duration) = match request {
        ["ping"] => (format!("{PREFIX}/ping"), vec![], WAIT),
        ["status"] | ["json"] => (format!("{PREFIX}/status/json"), vec![], WAIT),
        ["status", name] | ["json", name] => (
            format!("{PREFIX}/status/json"),
            vec![OscType::String(name.to_string())],
            WAIT,
        ),
        ["reload"] => (format!("{PREFIX}/reload"), vec![], WAIT_RELOAD),
        ["reset", name] => (format!("{PREFIX}/op/{name}/reset"), vec![], WAIT),
        ["setuppars", name] => (format!("{PREFIX}/op/{name}/setuppars"), vec![], WAIT),
        ["pulse", name, par] => (format!("{PREFIX}/op/{name}/pulse/{par}"), vec![], WAIT),
        ["set", name, par, value] => {
            let v = match value.parse::<f32>() {
                Ok(f) => OscType::Float(f),
                Err(_) => OscType::String(value.to_string()),
            };
            (format!("{PREFIX}/op/{name}/par/{par}"), vec![v], WAIT)
        }
        [] => return Err(CtlError::Usage("missing REQUEST".into())),
        other => {
            return Err(CtlError::Usage(format!(
                "unknown request: {}",
                other.join(" ")
            )))
        }
    };
    let reply = request_once(to, &addr, osc_args, wait)?;
    match request.first() {
        Some(&"json") => Ok(reply.join(" ")),
        Some(&"status") => {
            let status: Status = serde_json::from_str(&reply.join(""))
                .map_err(|e| CtlError::Failed(format!("unreadable status: {e}")))?;
            Ok(status.human())
        }
        _ if reply.is_empty() => Ok("ok".into()),
        _ => Ok(reply.join(" ")),
    }
}

/// A config file → its control address; a number → 127.0.0.1:that; else HOST:PORT.
fn target_addr(target: &str) -> Result<SocketAddr, CtlError> {
    if let Ok(port) = target.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let path = Path::new(target);
    if !path.exists() {
        return Err(CtlError::Usage(format!(
            "{target} is neither a config file, a port nor HOST:PORT"
        )));
    }
    let config = crate::config::load(path, crate::chop::KINDS).map_err(|d| {
        CtlError::Failed(format!(
            "{target} has problems (chopd check {target}): {}",
            d.first().map(|d| d.to_string()).unwrap_or_default()
        ))
    })?;
    let Some(c) = config.control else {
        return Err(CtlError::Failed(format!(
            "{target} has no [control] section: the daemon has no control port"
        )));
    };
    if c.addr.port() == 0 {
        return Err(CtlError::Failed(format!(
            "{target} asks for any free control port (port = 0): give the port the log names \
             (\"bound control on …\")"
        )));
    }
    let ip = match c.addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, c.addr.port()))
}

/// Sends one request; returns the string arguments of its `/chopd/reply` after the address.
fn request_once(
    to: SocketAddr,
    addr: &str,
    args: Vec<OscType>,
    wait: Duration,
) -> Result<Vec<String>, CtlError> {
    let failed = |e: std::io::Error| CtlError::Failed(format!("control port {to}: {e}"));
    let local: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("a literal address")
    } else {
        "[::]:0".parse().expect("a literal address")
    };
    let sock = UdpSocket::bind(local).map_err(failed)?;
    let packet = OscPacket::Message(OscMessage {
        addr: addr.to_string(),
        args,
    });
    let bytes = rosc::encoder::encode(&packet)
        .map_err(|e| CtlError::Failed(format!("cannot encode {addr}: {e:?}")))?;
    // Connected, so a closed port is reported at once (ICMP port unreachable) rather than
    // after the whole wait.
    sock.connect(to).map_err(failed)?;
    sock.send(&bytes).map_err(failed)?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CtlError::Failed(format!(
                "no answer from {to} within {} s (is chopd running with this control port, \
                 and is this host in its [control] allow list?)",
                wait.as_secs()
            )));
        }
        sock.set_read_timeout(Some(left)).map_err(failed)?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(CtlError::Failed(format!(
                    "nothing listens on {to} (is chopd running, with this control port?)"
                )))
            }
            Err(e) => return Err(failed(e)),
        };
        let Ok(p) = osc::decode(&buf[..n]) else {
            continue;
        };
        for m in osc::messages(p) {
            let for_us = matches!(m.args.first(), Some(OscType::String(a)) if a == addr);
            let rest = || m.args[1..].iter().map(show_arg).collect::<Vec<_>>();
            if m.addr == format!("{PREFIX}/reply") && for_us {
                return Ok(rest());
            }
            if m.addr == format!("{PREFIX}/error") && for_us {
                return Err(CtlError::Failed(rest().join(" ")));
            }
        }
    }
}

fn show_arg(a: &OscType) -> String {
    match a {
        OscType::String(s) => s.clone(),
        OscType::Int(i) => i.to_string(),
        OscType::Float(f) => f.to_string(),
        OscType::Double(f) => f.to_string(),
        OscType::Long(i) => i.to_string(),
        OscType::Bool(b) => b.to_string(),
        other => osc::type_name(other).to_string(),
    }
}
