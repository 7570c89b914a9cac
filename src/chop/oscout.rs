//! OSC Out DAT (docs/osc.md): TouchDesigner's way for scripts to send arbitrary OSC. Bound to
//! one of the config's destinations (`destination = "x32"`), it gives its DAT object
//! `sendOSC(address, args, asBundle=False, useNonStandardTypes=True)` and `sendBytes(*messages)`
//! (`python::api::oscout`); what scripts send during a frame goes out with that frame's
//! exports, over the destination's transport (UDP, multicast or TCP).

use serde::Deserialize;
use toml::Spanned;

use crate::chop::native::Pars;
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig, Settings};
use crate::cook::dat::{DatBody, DatContent, Table};
use crate::cook::par::ParDef;
use crate::cook::{
    BuildCtx, ChopData, CookCtx, CookError, Frame, NodeState, Operator, OscOutgoing,
};
use crate::python::outbox;

pub struct OscOut;

/// The keys of an `oscout` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// The [destinations.NAME] scripts send to through this operator's sendOSC and sendBytes
    #[schemars(with = "String")]
    pub destination: Spanned<String>,
}

/// The checked settings of an OSC Out DAT.
#[derive(Clone, Debug, PartialEq)]
pub struct OscOutConfig {
    pub destination: String,
}

impl Kind for OscOut {
    const NAME: &'static str = "oscout";
    const SUMMARY: &'static str = "OSC Out DAT: scripts send any OSC to a destination (sendOSC, sendBytes)";
    type Raw = Raw;
    type Settings = OscOutConfig;

    fn check(_cx: &mut Checker, r: Raw, refs: &mut OpRefs) -> Option<OscOutConfig> {
        refs.sends_to(r.destination.get_ref(), r.destination.span());
        Some(OscOutConfig {
            destination: r.destination.into_inner(),
        })
    }
}

impl Settings for OscOutConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        let defs = vec![ParDef::string("destination", "Connect", &self.destination)
            .label("Destination")
            .read_only()];
        Ok(Box::new(OscOutOp {
            name: op.name.clone(),
            destination: self.destination.clone(),
            pars: Pars::new(op, cx.rate, defs, &[]),
            sent: 0,
        }))
    }
}

pub struct OscOutOp {
    name: String,
    destination: String,
    pars: Pars,
    /// Messages and packets handed to the destination.
    sent: u64,
}

impl Operator for OscOutOp {
    fn wants_cook(&mut self, _frame: &Frame, _nodes: &[NodeState]) -> bool {
        false
    }

    fn cook(&mut self, _ctx: &mut CookCtx, _out: &mut ChopData) -> Result<(), CookError> {
        Ok(())
    }

    fn extras(&self, out: &mut Vec<(&'static str, f64)>) {
        out.push(("sent", self.sent as f64));
    }

    fn initial_dat(&self) -> Option<DatContent> {
        Some(DatContent::new(DatBody::Table(Table::default())))
    }

    fn osc_out(&mut self, send: &mut dyn FnMut(&str, OscOutgoing)) {
        for item in outbox::take(&self.name) {
            self.sent += 1;
            send(&self.destination, item);
        }
    }

    crate::native_pars!();
}
