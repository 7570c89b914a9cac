//! DAT content: the rows of strings of a table DAT or the text of a text DAT, as the graph keeps
//! it per node ([`super::NodeState::dat`]) for scripts and export tables to read and edit. Pure
//! data: reading files and watching them is the DAT kinds' job, the Python objects are
//! `python::api::dat`.
//!
//! A table is rectangular: every row has `num_cols` cells (a short row read from a file is
//! padded with empty cells), as TouchDesigner's tables are.

use std::io::Read;
use std::path::Path;

/// Largest DAT file read (or text set by a script): bigger ones are refused with an error.
pub const MAX_DAT_BYTES: u64 = 16 << 20;

/// How a table file is split into cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Comma-separated, `"` quotes cells holding commas, quotes or newlines.
    Csv,
    /// Tab-separated, no quoting (TouchDesigner's own table text).
    Tsv,
}

impl TableFormat {
    /// The format a file's extension implies: `.tsv` and `.txt` are tab-separated, anything
    /// else is CSV.
    pub fn of_path(path: &Path) -> TableFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("tsv") || e.eq_ignore_ascii_case("txt") => {
                TableFormat::Tsv
            }
            _ => TableFormat::Csv,
        }
    }
}

/// A rectangular table of strings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    cols: usize,
    rows: Vec<Vec<String>>,
}

/// What a DAT holds.
#[derive(Clone, Debug, PartialEq)]
pub enum DatBody {
    Table(Table),
    Text(String),
}

/// The content of one DAT node, with a version that changes on every edit (module caches and
/// export tables follow it). Versions come from one counter for the whole process, so a DAT
/// rebuilt by a reload never repeats a version its predecessor had.
#[derive(Clone, Debug, PartialEq)]
pub struct DatContent {
    pub body: DatBody,
    pub version: u64,
}

fn next_version() -> u64 {
    static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl DatContent {
    pub fn new(body: DatBody) -> DatContent {
        DatContent {
            body,
            version: next_version(),
        }
    }

    /// Replaces the body (a file changed): the version moves on.
    pub fn replace(&mut self, body: DatBody) {
        self.body = body;
        self.touch();
    }

    /// Notes an edit of the body: the version moves on.
    pub fn touch(&mut self) {
        self.version = next_version();
    }

    pub fn table(&self) -> Option<&Table> {
        match &self.body {
            DatBody::Table(t) => Some(t),
            DatBody::Text(_) => None,
        }
    }

    /// The whole content as text: a table's cells tab-separated, each row ending in a newline.
    pub fn text(&self) -> String {
        match &self.body {
            DatBody::Table(t) => t.to_text(),
            DatBody::Text(s) => s.clone(),
        }
    }
}

impl Table {
    /// A table of `rows`, padded to the longest row.
    pub fn from_rows(rows: Vec<Vec<String>>) -> Table {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut t = Table { cols, rows };
        for r in &mut t.rows {
            r.resize(cols, String::new());
        }
        t
    }

    /// Parses tab-separated text (one row a line, a `\r` before the newline dropped).
    pub fn from_tsv(text: &str) -> Table {
        if text.is_empty() {
            return Table::default();
        }
        let body = text.strip_suffix('\n').unwrap_or(text);
        Table::from_rows(
            body.split('\n')
                .map(|l| {
                    l.strip_suffix('\r')
                        .unwrap_or(l)
                        .split('\t')
                        .map(str::to_string)
                        .collect()
                })
                .collect(),
        )
    }

    /// Parses a table file's text; errors name the line.
    pub fn parse(text: &str, format: TableFormat) -> Result<Table, String> {
        match format {
            TableFormat::Tsv => Ok(Table::from_tsv(text)),
            TableFormat::Csv => {
                let mut rows = Vec::new();
                let records = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(text.as_bytes())
                    .into_records();
                for r in records {
                    let r = r.map_err(|e| match e.position() {
                        Some(p) => format!("line {}: {e}", p.line()),
                        None => e.to_string(),
                    })?;
                    rows.push(r.iter().map(str::to_string).collect());
                }
                Ok(Table::from_rows(rows))
            }
        }
    }

    pub fn num_rows(&self) -> usize {
        self.rows.len()
    }

    pub fn num_cols(&self) -> usize {
        self.cols
    }

    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    pub fn get(&self, r: usize, c: usize) -> Option<&str> {
        self.rows.get(r)?.get(c).map(String::as_str)
    }

    /// Sets an existing cell; false when it is outside the table.
    pub fn set(&mut self, r: usize, c: usize, v: String) -> bool {
        match self.rows.get_mut(r).and_then(|row| row.get_mut(c)) {
            Some(cell) => {
                *cell = v;
                true
            }
            None => false,
        }
    }

    /// The first row whose first cell is `name` (a row's name).
    pub fn row_named(&self, name: &str) -> Option<usize> {
        self.rows
            .iter()
            .position(|r| r.first().is_some_and(|c| c == name))
    }

    /// The first column whose cell in row 0 is `name` (a column's name).
    pub fn col_named(&self, name: &str) -> Option<usize> {
        self.rows.first()?.iter().position(|c| c == name)
    }

    /// Inserts a row at `at` (clamped to the end); a longer row widens the table.
    pub fn insert_row(&mut self, at: usize, mut vals: Vec<String>) -> usize {
        self.widen(vals.len());
        vals.resize(self.cols, String::new());
        let at = at.min(self.rows.len());
        self.rows.insert(at, vals);
        at
    }

    /// Inserts a column at `at` (clamped to the end); a longer column adds rows.
    pub fn insert_col(&mut self, at: usize, vals: Vec<String>) -> usize {
        while self.rows.len() < vals.len() {
            self.rows.push(vec![String::new(); self.cols]);
        }
        let at = at.min(self.cols);
        let mut vals = vals.into_iter();
        for r in &mut self.rows {
            r.insert(at, vals.next().unwrap_or_default());
        }
        self.cols += 1;
        at
    }

    pub fn delete_row(&mut self, r: usize) -> bool {
        if r < self.rows.len() {
            self.rows.remove(r);
            true
        } else {
            false
        }
    }

    /// Deletes `n` rows from row `from` on (fewer when the table ends first).
    pub fn drop_rows(&mut self, from: usize, n: usize) {
        let from = from.min(self.rows.len());
        let to = from.saturating_add(n).min(self.rows.len());
        self.rows.drain(from..to);
    }

    pub fn delete_col(&mut self, c: usize) -> bool {
        if c >= self.cols {
            return false;
        }
        for r in &mut self.rows {
            r.remove(c);
        }
        self.cols -= 1;
        if self.cols == 0 {
            self.rows.clear();
        }
        true
    }

    /// Replaces row `r`'s cells with `vals`; with `entire`, cells past `vals` are emptied.
    pub fn replace_row(&mut self, r: usize, vals: Vec<String>, entire: bool) {
        self.widen(vals.len());
        let row = &mut self.rows[r];
        let n = vals.len();
        for (cell, v) in row.iter_mut().zip(vals) {
            *cell = v;
        }
        if entire {
            row[n..].iter_mut().for_each(String::clear);
        }
    }

    /// Replaces column `c`'s cells with `vals`; with `entire`, cells past `vals` are emptied.
    pub fn replace_col(&mut self, c: usize, vals: Vec<String>, entire: bool) {
        while self.rows.len() < vals.len() {
            self.rows.push(vec![String::new(); self.cols]);
        }
        let n = vals.len();
        for (row, v) in self.rows.iter_mut().zip(vals) {
            row[c] = v;
        }
        if entire {
            self.rows[n..].iter_mut().for_each(|r| r[c].clear());
        }
    }

    /// Resizes to `rows` × `cols`: kept cells stay, new ones are empty.
    pub fn set_size(&mut self, rows: usize, cols: usize) {
        self.rows.resize(rows, Vec::new());
        for r in &mut self.rows {
            r.resize(cols, String::new());
        }
        self.cols = if rows == 0 { 0 } else { cols };
    }

    /// TouchDesigner's `clear(keepSize, keepFirstRow, keepFirstCol)`: removes rows and columns
    /// (or only empties cells with `keep_size`), keeping the first row or column when asked.
    pub fn clear(&mut self, keep_size: bool, keep_first_row: bool, keep_first_col: bool) {
        let r0 = usize::from(keep_first_row).min(self.rows.len());
        let c0 = usize::from(keep_first_col).min(self.cols);
        if keep_size || (keep_first_row && keep_first_col) {
            for (i, row) in self.rows.iter_mut().enumerate() {
                if i >= r0 {
                    row[c0..].iter_mut().for_each(String::clear);
                }
            }
            return;
        }
        if !keep_first_row && !keep_first_col {
            *self = Table::default();
            return;
        }
        if keep_first_row && !keep_first_col {
            self.rows.truncate(1);
            return;
        }
        // Only the first column stays.
        for row in &mut self.rows {
            row.truncate(1);
        }
        self.cols = c0;
    }

    /// Cells tab-separated, each row ending in a newline (TouchDesigner's table text).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            s.push_str(&r.join("\t"));
            s.push('\n');
        }
        s
    }

    fn widen(&mut self, cols: usize) {
        if cols > self.cols {
            self.cols = cols;
            for r in &mut self.rows {
                r.resize(cols, String::new());
            }
        }
    }
}

/// Reads a DAT file as text, refusing one over [`MAX_DAT_BYTES`] or that is not UTF-8 (the
/// error names the line).
pub fn read_file(path: &Path) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_DAT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_DAT_BYTES {
        return Err(format!(
            "larger than {} MB; a DAT file holds at most that",
            MAX_DAT_BYTES >> 20
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        format!("line {line}: not UTF-8 text")
    })?;
    // A byte-order mark some editors write is no part of the first cell or line.
    if text.starts_with('\u{feff}') {
        text.drain(..3);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[&str]]) -> Table {
        Table::from_rows(
            rows.iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect(),
        )
    }

    #[test]
    fn csv_quotes_and_short_rows_pad() {
        let table = Table::parse("name,value\n\"a,b\",1\nc\n", TableFormat::Csv).unwrap();
        assert_eq!(table, t(&[&["name", "value"], &["a,b", "1"], &["c", ""]]));
        assert_eq!(table.to_text(), "name\tvalue\na,b\t1\nc\t\n");
        assert_eq!(Table::from_tsv(&table.to_text()), table);
    }

    #[test]
    fn bad_utf8_names_its_line_and_a_bom_is_dropped() {
        let dir = std::env::temp_dir().join(format!("chopd-dat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.csv");
        std::fs::write(&f, b"a,b\nc,\xff\n").unwrap();
        assert_eq!(read_file(&f).unwrap_err(), "line 2: not UTF-8 text");
        std::fs::write(&f, "\u{feff}a,b\n").unwrap();
        assert_eq!(read_file(&f).unwrap(), "a,b\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn edits_keep_the_table_rectangular() {
        let mut x = t(&[&["a", "b"], &["c", "d"]]);
        assert_eq!(x.insert_row(9, vec!["e".into(), "f".into(), "g".into()]), 2);
        assert_eq!(x.num_cols(), 3);
        assert_eq!(x.get(0, 2), Some(""));
        x.insert_col(1, vec!["x".into()]);
        assert_eq!(x.rows()[0], ["a", "x", "b", ""]);
        assert_eq!(x.rows()[2], ["e", "", "f", "g"]);
        assert!(x.delete_col(1));
        x.replace_row(1, vec!["C".into()], true);
        assert_eq!(x.rows()[1], ["C", "", ""]);
        x.set_size(1, 2);
        assert_eq!(x, t(&[&["a", "b"]]));
        assert!(!x.set(3, 0, "no".into()));
    }

    #[test]
    fn clear_keeps_what_it_is_asked_to() {
        let base = t(&[&["h1", "h2"], &["r1", "v1"], &["r2", "v2"]]);
        let mut x = base.clone();
        x.clear(false, false, false);
        assert_eq!((x.num_rows(), x.num_cols()), (0, 0));
        let mut x = base.clone();
        x.clear(false, true, false);
        assert_eq!(x, t(&[&["h1", "h2"]]));
        let mut x = base.clone();
        x.clear(false, false, true);
        assert_eq!(x, t(&[&["h1"], &["r1"], &["r2"]]));
        let mut x = base.clone();
        x.clear(true, true, false);
        assert_eq!(x, t(&[&["h1", "h2"], &["", ""], &["", ""]]));
        let mut x = base;
        x.clear(true, false, true);
        assert_eq!(x, t(&[&["h1", ""], &["r1", ""], &["r2", ""]]));
    }
}
