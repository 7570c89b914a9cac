//! The contract between the config and the operator kinds: what `type = "NAME"` means. A kind
//! brings its raw keys (serde + JSON Schema), checks them into its own settings, and builds its
//! operator from them. The config knows kinds only through this contract; the list of kinds is
//! `chop::KINDS`, handed to [`super::load`].

use std::any::Any;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::check::{de, Checker};
use super::model::OperatorConfig;
use super::refs::OpRefs;
use crate::cook::{BuildCtx, Operator};

/// An operator kind, as each kind's module writes it. [`OperatorKind`] is the object-safe face
/// the checker and the schema use; every `Kind` is one.
pub trait Kind: Sync + 'static {
    /// The `type` of the operator in the config.
    const NAME: &'static str;
    /// One line for the JSON Schema: what the kind is.
    const SUMMARY: &'static str;
    /// The kind's own keys, as written in the config (`deny_unknown_fields`, spans kept).
    type Raw: DeserializeOwned + schemars::JsonSchema;
    /// The checked settings the kind builds its operator from.
    type Settings: Settings + PartialEq;

    /// Checks the raw keys, reporting every problem through `cx`. References to other
    /// operators (beyond `inputs`) and a UDP port the operator binds go into `refs` for the
    /// whole-config checks. `None` when the settings cannot be made (the config is then
    /// rejected anyway).
    fn check(cx: &mut Checker, raw: Self::Raw, refs: &mut OpRefs) -> Option<Self::Settings>;
}

/// The checked settings of one operator's kind.
pub trait Settings: DynEq + Debug + Send + Sync {
    /// Builds the running operator (opens its sockets, loads its code).
    fn build(&self, op: &OperatorConfig, cx: &BuildCtx) -> Result<Box<dyn Operator>, String>;

    /// The UDP port this operator binds, if it binds one: two operators cannot share it, and
    /// a reload lets the old operator go before its replacement binds it.
    fn udp_port(&self) -> Option<u16> {
        None
    }

    /// Whether building it needs the embedded Python interpreter.
    fn uses_python(&self) -> bool {
        false
    }

    /// What, beside its name and kind, makes an operator the same one whose runtime-set
    /// state a rebuild or a restart may bring back (a Script CHOP's callbacks file). Default:
    /// nothing more.
    fn identity(&self) -> String {
        String::new()
    }

    /// Files the running operator reads from its settings that a reload should follow.
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// Equality across `dyn Settings` (same kind and same values), so that a reload can tell an
/// unchanged operator from a changed one.
pub trait DynEq {
    fn as_any(&self) -> &dyn Any;
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + Any> DynEq for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

impl PartialEq for dyn Settings {
    fn eq(&self, other: &dyn Settings) -> bool {
        self.dyn_eq(other.as_any())
    }
}

/// The object-safe face of a [`Kind`].
pub trait OperatorKind: Sync {
    fn name(&self) -> &'static str;
    fn summary(&self) -> &'static str;
    /// The JSON Schema of the kind's own keys (an object schema).
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
    /// Reads the kind's own keys (`own`, a table) for the operator described as `what`.
    fn check(
        &self,
        cx: &mut Checker,
        own: toml::Spanned<toml::de::DeValue<'_>>,
        what: &str,
        known_elsewhere: &[&str],
        refs: &mut OpRefs,
    ) -> Option<Arc<dyn Settings>>;
}

impl<K: Kind> OperatorKind for K {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn summary(&self) -> &'static str {
        K::SUMMARY
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.root_schema_for::<K::Raw>()
    }

    fn check(
        &self,
        cx: &mut Checker,
        own: toml::Spanned<toml::de::DeValue<'_>>,
        what: &str,
        known_elsewhere: &[&str],
        refs: &mut OpRefs,
    ) -> Option<Arc<dyn Settings>> {
        let raw: K::Raw = de(cx.d, own, what, known_elsewhere)?;
        let settings = K::check(cx, raw, refs)?;
        Some(Arc::new(settings))
    }
}

/// The kinds a config may use, in the order error messages list them.
pub type Kinds = [&'static dyn OperatorKind];
