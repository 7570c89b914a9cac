//! Info CHOP (README, "Info CHOPs"): another operator's cook statistics as one-sample channels, plus its
//! kind-specific extras; with `op = "/"`, the daemon's own clock and traffic statistics.

use crate::cook::{ChopData, CookCtx, CookError, Frame, NodeState, Operator};

pub struct InfoOp {
    target: String,
}

impl InfoOp {
    pub fn new(target: &str) -> InfoOp {
        InfoOp {
            target: target.to_string(),
        }
    }
}

impl Operator for InfoOp {
    /// The operator inspected (`op`, a path), fixed by the config.
    fn par_defs(&self) -> Vec<crate::cook::par::ParDef> {
        let path = match self.target.as_str() {
            "/" => "/".to_string(),
            key => crate::path::td_path(key),
        };
        vec![crate::cook::par::ParDef::string("op", "Info", &path)
            .label("Operator")
            .read_only()]
    }

    /// Statistics move every frame (cook times, counters), so an Info CHOP always cooks.
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        true
    }

    /// It cooks on every frame, but what it shows does not follow the frame's exact start (its
    /// lateness figures report how late that was): no spin for it.
    fn keeps_time(&self) -> bool {
        false
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let mut chans: Vec<(&str, f64)> = Vec::with_capacity(32);
        if self.target == "/" {
            let ctx = &*ctx;
            chans.extend(DAEMON_CHANNELS.iter().map(|&(k, get)| (k, get(ctx))));
        } else {
            let Some(i) = ctx.node_index(&self.target) else {
                return Err(CookError::Other(format!("no operator \"{}\"", self.target)));
            };
            let n = &ctx.nodes[i];
            chans.extend(OP_CHANNELS.iter().map(|&(k, get)| (k, get(n))));
            chans.extend(n.extras.iter().map(|&(k, v)| (k, v)));
        }
        let layout_same = out.num_chans() == chans.len()
            && chans
                .iter()
                .enumerate()
                .all(|(i, (k, _))| out.name(i) == *k);
        if !layout_same {
            out.clear();
            out.set_num_samples(1);
            for (k, _) in &chans {
                out.append_chan(k);
            }
        }
        out.rate = ctx.frame.rate;
        out.start = ctx.frame.frame;
        for (i, (_, v)) in chans.iter().enumerate() {
            out.chan_mut(i)[0] = *v as f32;
        }
        Ok(())
    }
}

/// The Info CHOP kind.
pub struct Info;

/// The keys of an `info` operator.
#[derive(serde::Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InfoRaw {
    /// Operator to inspect, or "/" for the daemon
    #[schemars(with = "String")]
    pub op: toml::Spanned<String>,
}

/// The checked settings of an Info CHOP.
#[derive(Clone, Debug, PartialEq)]
pub struct InfoConfig {
    /// Operator to inspect; `"/"` is the daemon itself.
    pub op: String,
}

impl crate::config::Kind for Info {
    const NAME: &'static str = "info";
    const SUMMARY: &'static str = "Info CHOP: another operator's statistics";
    type Raw = InfoRaw;
    type Settings = InfoConfig;

    fn check(
        _cx: &mut crate::config::Checker,
        r: InfoRaw,
        refs: &mut crate::config::refs::OpRefs,
    ) -> Option<InfoConfig> {
        let mut op = r.op.get_ref().clone();
        if op != "/" {
            // `gain`, `show/gain` and `/project1/show/gain` all name the same operator.
            op = crate::path::key_of(&op).unwrap_or(op);
            refs.reads(
                "op",
                &op,
                r.op.span(),
                " (use \"/\" for the daemon itself)",
                "an info operator cannot inspect itself",
            );
        }
        Some(InfoConfig { op })
    }
}

impl crate::config::Settings for InfoConfig {
    fn build(
        &self,
        _op: &crate::config::OperatorConfig,
        _cx: &crate::cook::BuildCtx,
    ) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(InfoOp::new(&self.op)))
    }
}

/// A channel's name and where its value comes from, on the daemon and on an operator.
pub type DaemonChannel = (&'static str, fn(&CookCtx<'_>) -> f64);
pub type OpChannel = (&'static str, fn(&NodeState) -> f64);

/// The channels of an Info CHOP on the daemon (`op = "/"`), in order. The control port's status
/// reuses these names for the same quantities.
pub const DAEMON_CHANNELS: &[DaemonChannel] = &[
    ("rate", |c| c.frame.rate),
    ("frame", |c| c.frame.frame as f64),
    ("frames", |c| c.daemon.frames as f64),
    ("dropped_frames", |c| c.daemon.dropped_frames as f64),
    ("lateness_p50", |c| c.daemon.lateness_p50_ms),
    ("lateness_p99", |c| c.daemon.lateness_p99_ms),
    ("lateness_max", |c| c.daemon.lateness_max_ms),
    ("frame_time", |c| c.daemon.frame_time_ms),
    ("packets_in", |c| c.daemon.packets_in as f64),
    ("packets_out", |c| c.daemon.packets_out as f64),
    ("messages_out", |c| c.daemon.messages_out as f64),
    ("dests_down", |c| c.daemon.dests_down as f64),
    ("dest_outages", |c| c.daemon.dest_outages as f64),
    ("dest_drops", |c| c.daemon.dest_drops as f64),
    ("rss_mb", |c| c.daemon.rss_mb),
    ("num_operators", |c| c.nodes.len() as f64),
    ("react_passes", |c| c.daemon.react_passes as f64),
    ("react_deferred", |c| c.daemon.react_deferred as f64),
];

/// The channels of an Info CHOP on an operator, in order, before the operator's own extras.
/// The control port's status reuses these names for the same quantities.
pub const OP_CHANNELS: &[OpChannel] = &[
    ("start", |n| n.output.start as f64),
    ("length", |n| n.output.num_samples() as f64),
    ("sample_rate", |n| n.output.rate),
    ("num_channels", |n| n.output.num_chans() as f64),
    ("time_slice", |n| f64::from(u8::from(n.timeslice))),
    ("export_sernum", |n| n.stats.export_sernum as f64),
    ("total_cooks", |n| n.stats.total_cooks as f64),
    ("react_cooks", |n| n.stats.react_cooks as f64),
    ("cook_time", |n| n.stats.cook_time_ms),
    ("cook_frame", |n| n.stats.cook_frame as f64),
    ("cook_abs_frame", |n| n.stats.cook_abs_frame as f64),
    ("cook_start_time", |n| n.stats.cook_start_ms),
    ("cook_end_time", |n| n.stats.cook_end_ms),
    ("cooked_this_frame", |n| {
        f64::from(u8::from(n.stats.cooked_this_frame))
    }),
    ("warnings", |n| n.stats.warnings as f64),
    ("errors", |n| n.stats.errors as f64),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The backticked names of `text`, leaving out what stands in parentheses.
    fn names(text: &str) -> Vec<String> {
        let mut plain = String::new();
        let mut depth = 0;
        for c in text.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => plain.push(c),
                _ => {}
            }
        }
        plain
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn between<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
        let start = text.find(from).unwrap_or_else(|| panic!("no {from:?}")) + from.len();
        let len = text[start..]
            .find(to)
            .unwrap_or_else(|| panic!("no {to:?}"));
        &text[start..start + len]
    }

    /// The README names every channel an Info CHOP makes, in order.
    #[test]
    fn the_readme_lists_the_info_channels() {
        let readme = include_str!("../../README.md");
        let info = between(readme, "- **`info`**", "\n- **");
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let op: Vec<&str> = OP_CHANNELS.iter().map(|c| c.0).collect();
        assert_eq!(
            names(between(
                info,
                "Channels:",
                "and the operator's own counters"
            )),
            list(&op)
        );
        let daemon: Vec<&str> = DAEMON_CHANNELS.iter().map(|c| c.0).collect();
        assert_eq!(
            names(info.split_once("`op = \"/\"`:").unwrap().1),
            list(&daemon)
        );
        let oscin = names(between(info, "(OSC In:", ")."));
        let config = crate::config::check_str(
            std::path::Path::new("t.toml"),
            "[[operator]]\nname = \"in\"\ntype = \"oscin\"\nport = 0\nlocal_address = \"127.0.0.1\"\n",
            crate::chop::KINDS,
        )
        .unwrap();
        let op = &config.operators[0];
        let c: &crate::chop::oscin::OscInConfig = op.settings().expect("an oscin");
        let op = crate::chop::oscin::OscInOp::new(
            op,
            c,
            Default::default(),
            std::time::Duration::from_millis(200),
            crate::wake::Wake::new(),
        )
        .unwrap();
        let mut extras = Vec::new();
        op.extras(&mut extras);
        let made: Vec<String> = extras.iter().map(|e| e.0.to_string()).collect();
        assert_eq!(oscin, made);
    }
}
