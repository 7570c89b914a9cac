//! Table DAT: rows of strings from a CSV or TSV file (followed when it changes) or written in
//! the config, that scripts read and edit (`op('cues')[1, 'value']`) and export tables name.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::datfile::{self, DatOp, FileForm};
use crate::config::refs::OpRefs;
use crate::config::{Checker, Kind, OperatorConfig, Settings};
use crate::cook::dat::{DatBody, Table, TableFormat};
use crate::cook::{BuildCtx, Operator};

/// The Table DAT kind.
pub struct TableDat;

/// The keys of a `table` operator.
#[derive(Deserialize, Debug, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// CSV or TSV file, relative to this config (.tsv and .txt are tab-separated); re-read when it changes
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
    /// How the file is split into cells (default: from its extension)
    pub format: Option<TableFormat>,
    /// The rows, written here instead of a file (cells are strings or numbers)
    #[schemars(with = "Option<Vec<Vec<serde_json::Value>>>")]
    pub rows: Option<Spanned<Vec<Vec<toml::Value>>>>,
}

/// The checked settings of a Table DAT: where it comes from and what it starts with.
#[derive(Clone, Debug, PartialEq)]
pub struct TableConfig {
    pub file: Option<(PathBuf, TableFormat)>,
    /// The rows as the check read them (a table).
    pub table: Arc<DatBody>,
}

impl Kind for TableDat {
    const NAME: &'static str = "table";
    const SUMMARY: &'static str = "Table DAT: rows of strings from a CSV/TSV file or the config";
    type Raw = Raw;
    type Settings = TableConfig;

    fn check(cx: &mut Checker, r: Raw, _refs: &mut OpRefs) -> Option<TableConfig> {
        match (&r.file, &r.rows) {
            (Some(_), Some(rows)) => {
                cx.d.error(
                    rows.span(),
                    "a table takes its rows from \"file\" or from \"rows\", not both",
                );
                None
            }
            (Some(f), None) => {
                let path = cx.dir().join(f.get_ref());
                let format = r.format.unwrap_or_else(|| TableFormat::of_path(&path));
                match datfile::load(&path, FileForm::Table(format)) {
                    Ok(body) => Some(TableConfig {
                        file: Some((path, format)),
                        table: Arc::new(body),
                    }),
                    Err(e) => {
                        cx.d.error(f.span(), format!("table file {e}"));
                        None
                    }
                }
            }
            (None, rows) => {
                if let (Some(_), Some(rows)) = (r.format, rows) {
                    cx.d.error(rows.span(), "\"format\" says how a \"file\" is read; \"rows\" need none");
                }
                let mut out = Vec::new();
                if let Some(rows) = rows {
                    for row in rows.get_ref() {
                        let mut cells = Vec::new();
                        for v in row {
                            match v {
                                toml::Value::String(s) => cells.push(s.clone()),
                                toml::Value::Integer(i) => cells.push(i.to_string()),
                                toml::Value::Float(x) => cells.push(x.to_string()),
                                toml::Value::Boolean(b) => cells.push(u8::from(*b).to_string()),
                                _ => {
                                    cx.d.error(
                                        rows.span(),
                                        "a cell in \"rows\" must be a string or a number",
                                    );
                                    return None;
                                }
                            }
                        }
                        out.push(cells);
                    }
                }
                Some(TableConfig {
                    file: None,
                    table: Arc::new(DatBody::Table(Table::from_rows(out))),
                })
            }
        }
    }
}

impl Settings for TableConfig {
    fn build(&self, _op: &OperatorConfig, _cx: &BuildCtx) -> Result<Box<dyn Operator>, String> {
        let file = self
            .file
            .as_ref()
            .map(|(p, f)| (p.clone(), FileForm::Table(*f)));
        Ok(Box::new(DatOp::new(self.table.clone(), file)))
    }

    fn is_table_dat(&self) -> bool {
        true
    }
}
