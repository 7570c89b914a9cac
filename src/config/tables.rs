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
/// `enable`, in any order. `by_index` reads `chan` as a channel index.
pub fn parse_export_table(text: &str, by_index: bool) -> Result<Vec<ExportRow>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Err("empty table (needs a header: chan,path,parameter[,enable])".into());
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| cols.iter().position(|c| c == name);
    let (Some(ci), Some(pi), Some(ri)) = (col("chan"), col("path"), col("parameter")) else {
        return Err(format!(
            "the header must name chan, path and parameter (found \"{}\")",
            header.trim()
        ));
    };
    let ei = col("enable");
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |i: usize| cells.get(i).copied().unwrap_or("");
        let chan = cell(ci);
        let chan =
            if by_index {
                ChanRef::Index(chan.parse().map_err(|_| {
                    format!("line {}: chan \"{chan}\" is not a channel index", n + 1)
                })?)
            } else {
                if chan.is_empty() {
                    return Err(format!("line {}: empty chan", n + 1));
                }
                ChanRef::Name(chan.to_string())
            };
        let parameter = cell(ri);
        if parameter.is_empty() {
            return Err(format!("line {}: empty parameter", n + 1));
        }
        let enable = match ei.map(cell) {
            None | Some("") | Some("1") | Some("on") | Some("true") => true,
            Some("0") | Some("off") | Some("false") => false,
            Some(other) => return Err(format!("line {}: enable \"{other}\" is not 1/0", n + 1)),
        };
        if !seen.insert(format!("{chan:?}")) {
            return Err(format!("line {}: channel {chan:?} is mapped twice", n + 1));
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
