//! The Script CHOP's config: its keys as written, their checks, and the build of the operator.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ScriptOp;
use crate::config::refs::OpRefs;
use crate::config::{Bounds, Checker, Kind, OperatorConfig, Settings};
use crate::cook::{BuildCtx, Operator, ParValue};

/// The Script CHOP kind.
pub struct Script;

/// `cook_budget_ms`: how long one callback may run before it is interrupted.
pub const COOK_BUDGET_MS: Bounds = Bounds::new(1, 60_000);

/// The keys of a `script` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Python callbacks file, relative to this config
    #[schemars(with = "String")]
    pub callbacks: Spanned<String>,
    /// A callback running longer is interrupted
    #[schemars(with = "Option<i64>", range(min = COOK_BUDGET_MS.min, max = COOK_BUDGET_MS.max))]
    pub cook_budget_ms: Option<Spanned<i64>>,
    /// Allow writing this operator's channels outside its cook
    pub modoutsidecook: Option<bool>,
    /// Initial custom parameter values by name
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub pars: Option<Spanned<toml::Table>>,
}

/// The checked settings of a Script CHOP.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptConfig {
    /// Absolute path of the callbacks file.
    pub callbacks: PathBuf,
    pub cook_budget: Duration,
    pub modoutsidecook: bool,
    /// Initial custom parameter values from the config, by parameter name (a group's list
    /// already spread over its members).
    pub pars: Vec<(String, ParValue)>,
    /// Expressions and bindings from the config, by parameter name.
    pub modes: Vec<(String, crate::cook::par::ParMode, String)>,
}

impl Kind for Script {
    const NAME: &'static str = "script";
    const SUMMARY: &'static str = "Script CHOP: Python callbacks";
    type Raw = Raw;
    type Settings = ScriptConfig;

    fn check(cx: &mut Checker, r: Raw, _refs: &mut OpRefs) -> Option<ScriptConfig> {
        let callbacks = cx.callbacks_file(&r.callbacks);
        let cook_budget = Duration::from_millis(cx.ranged_or(
            &r.cook_budget_ms,
            "cook_budget_ms",
            COOK_BUDGET_MS,
            1000,
        ) as u64);
        let pars = cx.par_values(&r.pars);
        let modes = cx.par_modes(&r.pars);
        Some(ScriptConfig {
            callbacks,
            cook_budget,
            modoutsidecook: r.modoutsidecook.unwrap_or(false),
            pars,
            modes,
        })
    }
}

impl Settings for ScriptConfig {
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        Ok(Box::new(ScriptOp::new(op, self, cx)?))
    }

    fn uses_python(&self) -> bool {
        true
    }

    fn identity(&self) -> String {
        self.callbacks.display().to_string()
    }
}
