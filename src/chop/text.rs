//! Text DAT: free text from a file (followed when it changes) or written in the config, that
//! scripts read and edit (`op('notes').text`) and import as a module (`mod.helpers.fn()`).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::datfile::{self, DatOp, FileForm};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig, Settings};
use crate::cook::dat::DatBody;
use crate::cook::{BuildCtx, Operator};

/// The Text DAT kind.
pub struct TextDat;

/// The keys of a `text` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Text file, relative to this config; re-read when it changes
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// The text, written here instead of a file
    #[schemars(with = "Option<String>")]
    pub text: Option<Spanned<String>>,
}

/// The checked settings of a Text DAT.
#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    pub file: Option<PathBuf>,
    /// The text as the check read it.
    pub text: Arc<DatBody>,
}

impl Kind for TextDat {
    const NAME: &'static str = "text";
    const SUMMARY: &'static str = "Text DAT: text from a file or the config, importable as a module";
    type Raw = Raw;
    type Settings = TextConfig;

    fn check(cx: &mut Checker, r: Raw, _refs: &mut OpRefs) -> Option<TextConfig> {
        match (r.file, r.text) {
            (Some(_), Some(t)) => {
                cx.d.error(
                    t.span(),
                    "a text DAT takes its text from \"file\" or from \"text\", not both",
                );
                None
            }
            (Some(f), None) => {
                let path = cx.dir().join(f.get_ref());
                match datfile::load(&path, FileForm::Text) {
                    Ok(body) => Some(TextConfig {
                        file: Some(path),
                        text: Arc::new(body),
                    }),
                    Err(e) => {
                        cx.d.error(f.span(), format!("text file {e}"));
                        None
                    }
                }
            }
            (None, None) => Some(TextConfig {
                file: None,
                text: Arc::new(DatBody::Text(String::new())),
            }),
            (None, Some(t)) => {
                let max = crate::cook::dat::MAX_DAT_BYTES;
                if t.get_ref().len() as u64 > max {
                    cx.d.error(t.span(), format!("\"text\" holds more than {} MB", max >> 20));
                    return None;
                }
                Some(TextConfig {
                    file: None,
                    text: Arc::new(DatBody::Text(t.into_inner())),
                })
            }
        }
    }
}

impl Settings for TextConfig {
    fn build(&self, _op: &OperatorConfig, _cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        let file = self.file.clone().map(|p| (p, FileForm::Text));
        Ok(Box::new(DatOp::new(self.text.clone(), file)))
    }
}
