//! Info CHOP (SPEC §4.4): another operator's cook statistics as one-sample channels, plus its
//! kind-specific extras; with `op = "/"`, the daemon's own clock and traffic statistics.

use super::{ChopData, CookCtx, CookError, Frame, NodeState, Operator};

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
    /// Statistics move every frame (cook times, counters), so an Info CHOP always cooks.
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        true
    }

    fn cook(&mut self, ctx: &mut CookCtx, out: &mut ChopData) -> Result<(), CookError> {
        let mut chans: Vec<(&str, f64)> = Vec::with_capacity(32);
        if self.target == "/" {
            let d = ctx.daemon;
            chans.extend([
                ("rate", ctx.frame.rate),
                ("frame", ctx.frame.frame as f64),
                ("frames", d.frames as f64),
                ("dropped_frames", d.dropped_frames as f64),
                ("lateness_p50", d.lateness_p50_ms),
                ("lateness_p99", d.lateness_p99_ms),
                ("lateness_max", d.lateness_max_ms),
                ("frame_time", d.frame_time_ms),
                ("packets_in", d.packets_in as f64),
                ("packets_out", d.packets_out as f64),
                ("messages_out", d.messages_out as f64),
                ("rss_mb", d.rss_mb),
                ("num_operators", ctx.nodes.len() as f64),
            ]);
        } else {
            let Some(i) = ctx.node_index(&self.target) else {
                return Err(CookError::Other(format!("no operator \"{}\"", self.target)));
            };
            let n = &ctx.nodes[i];
            let (o, s) = (&n.output, &n.stats);
            chans.extend([
                ("start", o.start as f64),
                ("length", o.num_samples() as f64),
                ("sample_rate", o.rate),
                ("num_channels", o.num_chans() as f64),
                ("time_slice", f64::from(u8::from(n.timeslice))),
                ("export_sernum", s.export_sernum as f64),
                ("total_cooks", s.total_cooks as f64),
                ("cook_time", s.cook_time_ms),
                ("cook_frame", s.cook_frame as f64),
                ("cook_abs_frame", s.cook_abs_frame as f64),
                ("cook_start_time", s.cook_start_ms),
                ("cook_end_time", s.cook_end_ms),
                (
                    "cooked_this_frame",
                    f64::from(u8::from(s.cooked_this_frame)),
                ),
                ("warnings", s.warnings as f64),
                ("errors", s.errors as f64),
            ]);
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
        let op = r.op.get_ref().clone();
        if op != "/" {
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
