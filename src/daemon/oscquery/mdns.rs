//! The mDNS/DNS-SD announcement: `_oscjson._tcp` for the HTTP/websocket port and `_osc._udp`
//! for the OSC port, under the configured name, through mdns-sd's responder thread.

use mdns_sd::{ServiceDaemon, ServiceInfo};

use crate::config::OscQueryConfig;

/// The announced services; withdrawn (goodbye packets) by [`Announced::withdraw`].
pub struct Announced {
    daemon: ServiceDaemon,
    names: Vec<String>,
}

/// Announces both services on the interfaces that carry the configured address (all of them
/// for 0.0.0.0 / ::).
pub fn announce(cfg: &OscQueryConfig, http: u16, osc: u16) -> anyhow::Result<Announced> {
    let daemon = ServiceDaemon::new()?;
    let host = format!(
        "{}.local.",
        hostname().unwrap_or_else(|| "chopd".to_string())
    );
    let ip = cfg.addr.ip();
    let mut names = Vec::new();
    for (ty, port) in [("_oscjson._tcp.local.", http), ("_osc._udp.local.", osc)] {
        let info = if ip.is_unspecified() {
            ServiceInfo::new(
                ty,
                &cfg.name,
                &host,
                (),
                port,
                None::<std::collections::HashMap<String, String>>,
            )?
            .enable_addr_auto()
        } else {
            ServiceInfo::new(
                ty,
                &cfg.name,
                &host,
                ip,
                port,
                None::<std::collections::HashMap<String, String>>,
            )?
        };
        names.push(info.get_fullname().to_string());
        daemon.register(info)?;
    }
    tracing::info!(kind = "mdns", name = %cfg.name, http, osc, "announced");
    Ok(Announced { daemon, names })
}

impl Announced {
    pub fn withdraw(self) {
        for n in &self.names {
            let _ = self.daemon.unregister(n);
        }
        let _ = self.daemon.shutdown();
    }
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}
