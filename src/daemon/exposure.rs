//! What a config opens beyond this host: warnings for `chopd check`, the start and each reload.

use crate::chop::oscin::OscInConfig;
use crate::config::{Cidr, Config, Diagnostic, Severity};

/// Warnings for what a config opens beyond this host: a control port or an OSC In bound past
/// loopback with no allow-list, or one that allows every address, or a control port whose
/// mutating requests need no token, or an OSCQuery server past loopback. `chopd check`, the start and each reload print them.
pub fn exposure(config: &Config) -> Vec<Diagnostic> {
    let src = std::fs::read_to_string(&config.file).unwrap_or_default();
    let file = config.file.display().to_string();
    let at = |needle: &str, message: String| {
        let (line, col) = src
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
            .unwrap_or((1, 1));
        Diagnostic {
            file: file.clone(),
            line,
            col,
            severity: Severity::Warning,
            message,
        }
    };
    let everyone = |allow: &[Cidr]| allow.iter().find(|c| c.prefix == 0).copied();
    let mut out = Vec::new();
    if let Some(c) = &config.control {
        if !c.addr.ip().is_loopback() {
            if let Some(all) = everyone(&c.allow) {
                out.push(at(
                    "[control]",
                    format!(
                        "the control port listens on {} and allows {}/0: every host that \
                         reaches it may ask; list the networks that need it",
                        c.addr, all.addr
                    ),
                ));
            }
            let beyond = c.allow.iter().any(|n| !n.addr.is_loopback());
            if beyond && c.token.is_none() {
                out.push(at(
                    "[control]",
                    format!(
                        "the control port listens on {} without a token: any allowed host may \
                         set, reset, pulse and reload; set [control] token",
                        c.addr
                    ),
                ));
            }
        }
    }
    if let Some(q) = config
        .oscquery
        .as_ref()
        .filter(|q| !q.addr.ip().is_loopback())
    {
        out.push(at(
            "[oscquery]",
            format!(
                "the OSCQuery server listens on {}: every host that reaches it reads the show \
                 (writes follow [control] allow and token)",
                q.addr
            ),
        ));
    }
    for op in &config.operators {
        let Some(o) = op.settings.as_any().downcast_ref::<OscInConfig>() else {
            continue;
        };
        if o.bind.ip().is_loopback() {
            continue;
        }
        let why = if o.allow.is_empty() {
            "without an allow-list".to_string()
        } else if let Some(all) = everyone(&o.allow) {
            format!("allowing {}/0", all.addr)
        } else {
            continue;
        };
        out.push(at(
            &format!("\"{}\"", op.name),
            format!(
                "oscin \"{}\" listens on {} {why}: any host that reaches it sets channels; \
                 set allow (or local_address = \"127.0.0.1\")",
                op.name, o.bind
            ),
        ));
    }
    out
}
