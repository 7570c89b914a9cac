//! `chopd ctl`: a command-line client of the control requests, so a technician on SSH needs no
//! OSC tool to see each operator's state or to reload, reset, pulse and set. Speaks the address
//! space of [`super::control`] over the local socket ([`super::local`]) by default, or over
//! UDP to a control port when told (`--osc`); prints replies for people, the status as
//! [`super::status::Status`] reads it back.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};

use super::local;
use super::request::{AUTH, PREFIX};
use super::status::Status;
use crate::config::ControlConfig;
use crate::osc;

pub const USAGE: &str = "\
usage: chopd ctl [TARGET] REQUEST
  TARGET   none: the local socket of this environment (RUNTIME_DIRECTORY, /run/chopd,
                 XDG_RUNTIME_DIR/chopd, then /tmp/chopd-UID)
           CONFIG              the local socket of that config's daemon (its [control]
                               socket, else as above, /run/chopd/NAME for chopd@NAME)
           --socket PATH       that socket
           --osc CONFIG|PORT|HOST:PORT [--token TOKEN]
                               the UDP control port (a config's token is used if it has one)
           PORT | HOST:PORT    the same as --osc
  REQUEST  ping | status [NAME] | json [NAME] | reload | reset NAME | setuppars NAME
           | pulse NAME PAR | set NAME PAR VALUE";

/// How long to wait for an answer; a reload may run set-up code, so it gets longer.
const WAIT: Duration = Duration::from_secs(5);
const WAIT_RELOAD: Duration = Duration::from_secs(35);

/// The words a request starts with: anything else first is a target.
const REQUESTS: &[&str] = &[
    "ping",
    "status",
    "json",
    "reload",
    "reset",
    "setuppars",
    "pulse",
    "set",
];

/// A failed `ctl`: usage (exit 2) or the request failed (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// Where requests go.
enum Target {
    Socket(PathBuf),
    Osc(SocketAddr, Option<String>),
}

/// Runs `chopd ctl` with the arguments after `ctl`; returns what to print.
pub fn run(args: &[&str]) -> Result<String, CtlError> {
    if matches!(args, ["--help" | "-h" | "help"]) {
        return Ok(USAGE.to_string());
    }
    let (target, request) = target(args)?;
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
    let reply = match target {
        Target::Socket(path) => request_local(&path, &addr, osc_args, wait)?,
        Target::Osc(to, token) => {
            let sent = match (&token, addr.strip_prefix(PREFIX)) {
                (Some(t), Some(rest)) => format!("{AUTH}{t}{rest}"),
                _ => addr.clone(),
            };
            request_once(to, &sent, &addr, osc_args, wait)?
        }
    };
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

/// Splits the target options off the request.
fn target<'a, 'b>(args: &'a [&'b str]) -> Result<(Target, &'a [&'b str]), CtlError> {
    let missing = |what: &str| CtlError::Usage(format!("{what} needs a value"));
    match args {
        ["--socket", path, rest @ ..] => Ok((Target::Socket(PathBuf::from(path)), rest)),
        ["--socket"] => Err(missing("--socket")),
        ["--osc", to, rest @ ..] => {
            let (token, rest) = match rest {
                ["--token", t, rest @ ..] => (Some(t.to_string()), rest),
                ["--token"] => return Err(missing("--token")),
                rest => (None, rest),
            };
            let (addr, from_config) = osc_target(to)?;
            Ok((Target::Osc(addr, token.or(from_config)), rest))
        }
        ["--osc"] => Err(missing("--osc")),
        [first, rest @ ..] if !REQUESTS.contains(first) => {
            if first.parse::<u16>().is_ok() || first.parse::<SocketAddr>().is_ok() {
                let (addr, _) = osc_target(first)?;
                return Ok((Target::Osc(addr, None), rest));
            }
            let path = Path::new(first);
            if !path.exists() {
                return Err(CtlError::Usage(format!(
                    "{first} is neither a request, a config file, a port nor HOST:PORT"
                )));
            }
            let control = config_control(first)?;
            Ok((
                found(local::candidates(Some((path, control.as_ref()))))?,
                rest,
            ))
        }
        rest => Ok((found(local::candidates(None))?, rest)),
    }
}

/// The first socket that exists; else the first place, so the error names it.
fn found(candidates: Vec<PathBuf>) -> Result<Target, CtlError> {
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => Ok(Target::Socket(p.clone())),
        None if candidates.len() == 1 => Ok(Target::Socket(candidates[0].clone())),
        None => Err(CtlError::Failed(format!(
            "no chopd socket at {} (is chopd running? else --socket PATH or --osc PORT)",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn config_control(target: &str) -> Result<Option<ControlConfig>, CtlError> {
    let config = crate::config::load(Path::new(target), crate::chop::KINDS).map_err(|d| {
        CtlError::Failed(format!(
            "{target} has problems (chopd check {target}): {}",
            d.first().map(|d| d.to_string()).unwrap_or_default()
        ))
    })?;
    Ok(config.control)
}

/// A number → 127.0.0.1:that; HOST:PORT; else a config file → its control address and token.
fn osc_target(target: &str) -> Result<(SocketAddr, Option<String>), CtlError> {
    if let Ok(port) = target.parse::<u16>() {
        return Ok((SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port), None));
    }
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok((addr, None));
    }
    if !Path::new(target).exists() {
        return Err(CtlError::Usage(format!(
            "{target} is neither a config file, a port nor HOST:PORT"
        )));
    }
    let Some(c) = config_control(target)? else {
        return Err(CtlError::Failed(format!(
            "{target} has no [control] section: the daemon has no control port"
        )));
    };
    let token = c.token.clone();
    target_addr(target, c).map(|a| (a, token))
}

/// A config's control address, as a client on this host reaches it.
fn target_addr(target: &str, c: ControlConfig) -> Result<SocketAddr, CtlError> {
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
    sent: &str,
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
    let bytes = encode(sent, args)?;
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
            // The deadline is checked at the loop's top; a signal is no error either.
            Err(e) if crate::osc::is_retry(&e) => continue,
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
        if let Some(r) = osc::messages(p).iter().find_map(|m| answer_to(m, addr)) {
            return r;
        }
    }
}

fn encode(addr: &str, args: Vec<OscType>) -> Result<Vec<u8>, CtlError> {
    let packet = OscPacket::Message(OscMessage {
        addr: addr.to_string(),
        args,
    });
    rosc::encoder::encode(&packet)
        .map_err(|e| CtlError::Failed(format!("cannot encode {addr}: {e:?}")))
}

/// The string arguments after the address of the reply to `addr`, or its error.
fn answer_to(m: &OscMessage, addr: &str) -> Option<Result<Vec<String>, CtlError>> {
    let for_us = matches!(m.args.first(), Some(OscType::String(a)) if a == addr);
    let rest = || m.args[1..].iter().map(show_arg).collect::<Vec<_>>();
    if m.addr == format!("{PREFIX}/reply") && for_us {
        return Some(Ok(rest()));
    }
    if m.addr == format!("{PREFIX}/error") && for_us {
        return Some(Err(CtlError::Failed(rest().join(" "))));
    }
    None
}

/// Sends one request over the local socket; returns what `request_once` does.
fn request_local(
    path: &Path,
    addr: &str,
    args: Vec<OscType>,
    wait: Duration,
) -> Result<Vec<String>, CtlError> {
    let failed = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                " (is chopd running with this socket?)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (the socket is for the service's user and group: use sudo or join the group)"
            }
            _ => "",
        };
        CtlError::Failed(format!("control socket {}: {e}{hint}", path.display()))
    };
    let mut s = UnixStream::connect(path).map_err(failed)?;
    s.set_read_timeout(Some(wait)).map_err(failed)?;
    local::write_frame(&mut s, &encode(addr, args)?).map_err(failed)?;
    s.flush().map_err(failed)?;
    let deadline = Instant::now() + wait;
    loop {
        if Instant::now() > deadline {
            return Err(CtlError::Failed(format!(
                "no answer on {} within {} s",
                path.display(),
                wait.as_secs()
            )));
        }
        let frame = local::read_frame(&mut s).map_err(failed)?;
        let Ok(p) = osc::decode(&frame) else {
            continue;
        };
        if let Some(r) = osc::messages(p).iter().find_map(|m| answer_to(m, addr)) {
            return r;
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
