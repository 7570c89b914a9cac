//! Parsers for the small tables a config names or holds: MIDI channel lists and export tables
//! (CSV). Pure functions from text to rows; the checker reports their errors where they were
//! written.

use std::collections::HashSet;

use super::model::{ChanRef, ExportRow};

/// `"1-7 12"` → the accepted MIDI channels.
pub fn parse_midi_channels(s: &str) -> Result<[bool; 16], String> {
    let mut out = [false; 16];
    for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let parse = |x: &str| {
            x.trim()
                .parse::<usize>()
                .ok()
                .filter(|c| (1..=16).contains(c))
                .ok_or_else(|| format!("MIDI channel \"{part}\" must be 1–16, or a range like 1-7"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("MIDI channel range \"{part}\" runs backwards"));
        }
        for c in lo..=hi {
            out[c - 1] = true;
        }
    }
    Ok(out)
}

/// Parses an export table: CSV with a header naming `chan`, `path`, `parameter` and optionally
/// `enable`, in any order. `by_index` reads `chan` as a channel index. Cells are trimmed; a cell
/// whose first character is `"` is quoted, so it may hold commas (a blank before the quote makes
/// the quote part of the text, as in any CSV). Blank lines and lines whose first non-blank
/// character is `#` are skipped, and errors name the line in the file.
pub fn parse_export_table(text: &str, by_index: bool) -> Result<Vec<ExportRow>, String> {
    let lines: Vec<&str> = text.lines().collect();
    // Comments and blank lines are whole lines, decided before quoting: the csv reader only
    // knows a `#` in the first column, and an indented one would otherwise be read as a row.
    // Emptying the line rather than dropping it keeps the reader's line numbers the file's.
    let kept: Vec<&str> = lines
        .iter()
        .map(|l| match l.trim_start() {
            t if t.is_empty() || t.starts_with('#') => "",
            _ => *l,
        })
        .collect();
    let kept = kept.join("\n");
    // A record's position is where the reader began looking for it, before the empty lines it
    // skips; the record itself begins at the first byte after them.
    let newlines: Vec<usize> = kept.match_indices('\n').map(|(i, _)| i).collect();
    let line_of = |pos: Option<&csv::Position>| {
        let from = pos.map_or(0, |p| p.byte() as usize).min(kept.len());
        let start = from + kept[from..].bytes().take_while(|&b| b == b'\n').count();
        1 + newlines.partition_point(|&i| i < start)
    };
    let records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(kept.as_bytes())
        .into_records()
        .map(|r| {
            let r = r.map_err(|e| e.to_string())?;
            Ok::<_, String>((line_of(r.position()), r))
        });
    let records = records.map(|r| r.map(|(n, rec)| (n, rec.iter().map(str::to_string).collect())));
    from_records(records, by_index, "line", |n| {
        lines
            .get(n.wrapping_sub(1))
            .copied()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

/// Reads an export table from a table DAT's rows, as [`parse_export_table`] reads a file:
/// errors name the row by its index (row 0 is the header). Blank rows and rows whose first
/// cell starts with `#` are skipped.
pub fn export_rows(cells: &[Vec<String>], by_index: bool) -> Result<Vec<ExportRow>, String> {
    let records = cells
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let first = r.first().map_or("", |c| c.trim());
            !(r.iter().all(|c| c.trim().is_empty()) || first.starts_with('#'))
        })
        .map(|(i, r)| Ok((i, r.iter().map(|c| c.trim().to_string()).collect())));
    from_records(records, by_index, "row", |i| {
        cells.get(i).map_or(String::new(), |r| r.join(","))
    })
}

/// The rows of an export table from its records (where each is, and its trimmed cells); `unit`
/// and `raw` say where a record is for errors.
fn from_records(
    mut records: impl Iterator<Item = Result<(usize, Vec<String>), String>>,
    by_index: bool,
    unit: &str,
    raw: impl Fn(usize) -> String,
) -> Result<Vec<ExportRow>, String> {
    let Some(header) = records.next() else {
        return Err("empty table (needs a header: chan,path,parameter[,enable])".into());
    };
    let (header_line, header) = header?;
    let cols: Vec<String> = header.iter().map(|c| c.to_ascii_lowercase()).collect();
    let col = |name: &str| cols.iter().position(|c| c == name);
    let (Some(ci), Some(pi), Some(ri)) = (col("chan"), col("path"), col("parameter")) else {
        return Err(format!(
            "the header must name chan, path and parameter (found \"{}\")",
            raw(header_line)
        ));
    };
    let ei = col("enable");
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for record in records {
        let (n, cells) = record?;
        let cell = |i: usize| cells.get(i).map_or("", String::as_str);
        let chan = cell(ci);
        let chan = if by_index {
            ChanRef::Index(
                chan.parse()
                    .map_err(|_| format!("{unit} {n}: chan \"{chan}\" is not a channel index"))?,
            )
        } else {
            if chan.is_empty() {
                return Err(format!("{unit} {n}: empty chan"));
            }
            ChanRef::Name(chan.to_string())
        };
        let parameter = cell(ri);
        if parameter.is_empty() {
            return Err(format!("{unit} {n}: empty parameter"));
        }
        let enable = match ei.map(cell) {
            None | Some("") | Some("1") | Some("on") | Some("true") => true,
            Some("0") | Some("off") | Some("false") => false,
            Some(other) => return Err(format!("{unit} {n}: enable \"{other}\" is not 1/0")),
        };
        if !seen.insert(format!("{chan:?}")) {
            return Err(format!("{unit} {n}: channel {chan:?} is mapped twice"));
        }
        rows.push(ExportRow {
            chan,
            path: cell(pi).trim_matches('/').to_string(),
            parameter: parameter.to_string(),
            enable,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(chan: &str, path: &str, parameter: &str) -> ExportRow {
        ExportRow {
            chan: ChanRef::Name(chan.into()),
            path: path.into(),
            parameter: parameter.into(),
            enable: true,
        }
    }

    #[test]
    fn quoted_cells_keep_their_commas() {
        let rows = parse_export_table(
            "chan,path,parameter\n\"f1,left\",\"/desk, a/\",\"level\"\n\"f2\"\"x\",b,p\n",
            false,
        )
        .unwrap();
        assert_eq!(
            rows,
            [row("f1,left", "desk, a", "level"), row("f2\"x", "b", "p")]
        );
    }

    #[test]
    fn errors_count_every_line_of_the_file() {
        let text = "\r\n# map\r\n Chan , PATH ,Parameter,Enable \r\n\r\n   # indented\r\n\
                    f1, /a/ ,lvl, on\r\n\t\nf2,b,p,\n\"x\ny\",c,q\nf3,c,q,maybe\n";
        assert_eq!(
            parse_export_table(text, false).unwrap_err(),
            "line 11: enable \"maybe\" is not 1/0"
        );
        assert_eq!(
            parse_export_table(text, true).unwrap_err(),
            "line 6: chan \"f1\" is not a channel index"
        );
        assert_eq!(
            parse_export_table("chan,path,parameter\n\n,a,b\n", false).unwrap_err(),
            "line 3: empty chan"
        );
        assert_eq!(
            parse_export_table("chan,path,parameter\nf1,a\n", false).unwrap_err(),
            "line 2: empty parameter"
        );
        assert_eq!(
            parse_export_table("\n  # nothing\n\n", false).unwrap_err(),
            "empty table (needs a header: chan,path,parameter[,enable])"
        );
        assert_eq!(
            parse_export_table("# c\n  chan, path  \n", false).unwrap_err(),
            "the header must name chan, path and parameter (found \"chan, path\")"
        );
    }

    #[test]
    fn a_table_dats_rows_read_as_a_file_does() {
        let cells = |rows: &[&[&str]]| -> Vec<Vec<String>> {
            rows.iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        let rows = export_rows(
            &cells(&[
                &["# map", "", ""],
                &[" Chan", "path", "parameter"],
                &["", "", ""],
                &["f1", "/a/", "lvl"],
            ]),
            false,
        )
        .unwrap();
        assert_eq!(rows, [row("f1", "a", "lvl")]);
        assert_eq!(
            export_rows(
                &cells(&[&["chan", "path", "parameter"], &["x", "a", "b"]]),
                true
            )
            .unwrap_err(),
            "row 1: chan \"x\" is not a channel index"
        );
        assert_eq!(
            export_rows(&cells(&[&["chan", "path"]]), false).unwrap_err(),
            "the header must name chan, path and parameter (found \"chan,path\")"
        );
    }
}
