//! The channel data of one operator: named channels sharing one sample rate, one start index and
//! one length, stored as one contiguous block of f32 (channel-major) so that handing all of it to
//! numpy or the exporter is a single slice.
//!
//! Also here: legal channel names (README, "Patterns"), scope pass-through and sample-rate matching
//! (`srselect`) with linear resampling. No I/O, no operator logic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pattern::Pattern;

/// Source of layout ids: every change of a `ChopData`'s channel names takes a fresh one.
static NEXT_LAYOUT: AtomicU64 = AtomicU64::new(1);

fn fresh_layout() -> u64 {
    NEXT_LAYOUT.fetch_add(1, Ordering::Relaxed)
}

/// Channels of one operator. Invariant: `data.len() == names.len() * len`.
#[derive(Clone, Debug)]
pub struct ChopData {
    /// Samples per second.
    pub rate: f64,
    /// Index of the first sample, in samples at `rate` since the clock started.
    pub start: i64,
    len: usize,
    names: Vec<String>,
    index: HashMap<String, usize>,
    data: Vec<f32>,
    /// Names this data's channel names, whatever its samples: two `ChopData` with the same id
    /// have the same names (a copy carries the id along with the names), so a cook can tell
    /// an unchanged layout without comparing a thousand names.
    layout: u64,
}

/// Equal when rate, start, names and samples are, the samples bit for bit (this is the per-cook
/// change check: a NaN that stays is no change); `index` is derived from `names` and would only
/// make the check slower.
impl PartialEq for ChopData {
    fn eq(&self, other: &Self) -> bool {
        self.rate == other.rate
            && self.start == other.start
            && self.len == other.len
            && same_bits(&self.data, &other.data)
            && (self.layout == other.layout || self.names == other.names)
    }
}

/// Whether two runs of values are the same bit for bit (a NaN is the same as itself).
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .fold(0, |d, (x, y)| d | (x.to_bits() ^ y.to_bits()))
            == 0
}

impl Default for ChopData {
    fn default() -> Self {
        ChopData::new(60.0)
    }
}

impl ChopData {
    /// No channels, one sample each, at `rate`.
    pub fn new(rate: f64) -> ChopData {
        ChopData {
            rate,
            start: 0,
            len: 1,
            names: Vec::new(),
            index: HashMap::new(),
            data: Vec::new(),
            layout: fresh_layout(),
        }
    }

    /// The id of the current channel names ([`ChopData`]'s `layout`): equal ids, equal names.
    pub fn layout_id(&self) -> u64 {
        self.layout
    }

    pub fn num_chans(&self) -> usize {
        self.names.len()
    }

    pub fn num_samples(&self) -> usize {
        self.len
    }

    /// Index of the last sample (`start + length - 1`), as TouchDesigner's `end`.
    pub fn end(&self) -> i64 {
        self.start + self.len as i64 - 1
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn chan(&self, i: usize) -> &[f32] {
        &self.data[i * self.len..(i + 1) * self.len]
    }

    pub fn chan_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.len..(i + 1) * self.len]
    }

    pub fn chan_by_name(&self, name: &str) -> Option<&[f32]> {
        self.index_of(name).map(|i| self.chan(i))
    }

    /// The last sample of channel `i`: the value a non-sliced reader or an exporter sees.
    pub fn last(&self, i: usize) -> f32 {
        self.data[(i + 1) * self.len - 1]
    }

    /// All samples, channel-major (`[chan0…, chan1…, …]`).
    pub fn samples(&self) -> &[f32] {
        &self.data
    }

    pub fn samples_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Removes every channel; keeps rate, start and length.
    pub fn clear(&mut self) {
        self.names.clear();
        self.index.clear();
        self.data.clear();
        self.layout = fresh_layout();
    }

    /// Appends a channel filled with zeros and returns its index. A channel of the same name is
    /// replaced in place (zeroed), as TouchDesigner does, so names stay unique.
    pub fn append_chan(&mut self, name: &str) -> usize {
        if let Some(i) = self.index_of(name) {
            self.chan_mut(i).fill(0.0);
            return i;
        }
        let i = self.names.len();
        self.layout = fresh_layout();
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        self.data.resize(self.data.len() + self.len, 0.0);
        i
    }

    /// Appends a channel holding `vals` (resized to the current length, padding with the last
    /// value).
    pub fn append_with(&mut self, name: &str, vals: &[f32]) -> usize {
        let i = self.append_chan(name);
        let len = self.len;
        let dst = self.chan_mut(i);
        let n = vals.len().min(len);
        dst[..n].copy_from_slice(&vals[..n]);
        if n < len {
            dst[n..].fill(vals.last().copied().unwrap_or(0.0));
        }
        i
    }

    pub fn remove_chan(&mut self, i: usize) {
        let name = self.names.remove(i);
        self.layout = fresh_layout();
        self.index.remove(&name);
        self.data.drain(i * self.len..(i + 1) * self.len);
        for (j, n) in self.names.iter().enumerate().skip(i) {
            self.index.insert(n.clone(), j);
        }
    }

    /// Changes the number of samples per channel. Existing samples are kept from the front; new
    /// ones repeat each channel's last value (so a held value stays held), or zero when empty.
    pub fn set_num_samples(&mut self, len: usize) {
        let len = len.max(1);
        if len == self.len {
            return;
        }
        let old = self.len;
        let mut data = Vec::with_capacity(self.names.len() * len);
        for i in 0..self.names.len() {
            let src = &self.data[i * old..(i + 1) * old];
            let keep = old.min(len);
            data.extend_from_slice(&src[..keep]);
            let fill = src[old - 1];
            data.extend(std::iter::repeat_n(fill, len - keep));
        }
        self.data = data;
        self.len = len;
    }

    /// Makes this a copy of `other`'s channels, rate, start and length, reusing allocations.
    pub fn copy_from(&mut self, other: &ChopData) {
        self.rate = other.rate;
        self.start = other.start;
        self.len = other.len;
        if self.layout != other.layout && self.names != other.names {
            self.names.clone_from(&other.names);
            self.index.clone_from(&other.index);
        }
        self.layout = other.layout;
        self.data.clone_from(&other.data);
    }

    /// True when both hold the same channel names in the same order.
    pub fn same_layout(&self, other: &ChopData) -> bool {
        self.layout == other.layout || self.names == other.names
    }

    /// Appends the channels of `input` outside `scope` that this data does not already name —
    /// the `scope` pass-through — resampled to this data's length when they differ.
    pub fn pass_through(&mut self, input: &ChopData, scope: &Pattern) {
        if scope.is_all() {
            return;
        }
        for (i, name) in input.names.iter().enumerate() {
            if scope.matches(name) || self.index.contains_key(name) {
                continue;
            }
            let vals = resample_slice(input.chan(i), self.len);
            self.append_with(name, &vals);
        }
    }

    /// Linear resampling to `rate` over the same time span (`srselect`).
    pub fn resampled(&self, rate: f64) -> ChopData {
        if rate == self.rate || rate <= 0.0 {
            return self.clone();
        }
        let seconds = self.len as f64 / self.rate;
        let len = ((seconds * rate).round() as usize).max(1);
        let mut out = ChopData::new(rate);
        out.start = (self.start as f64 * rate / self.rate).round() as i64;
        out.len = len;
        for (i, name) in self.names.iter().enumerate() {
            let vals = resample_slice(self.chan(i), len);
            out.append_with(name, &vals);
        }
        out
    }
}

/// Stretches or squeezes `src` to `len` samples by linear interpolation, end points kept.
pub fn resample_slice(src: &[f32], len: usize) -> Vec<f32> {
    if src.len() == len {
        return src.to_vec();
    }
    if src.len() <= 1 || len <= 1 {
        let v = src.last().copied().unwrap_or(0.0);
        return vec![v; len.max(1)];
    }
    let scale = (src.len() - 1) as f64 / (len - 1) as f64;
    (0..len)
        .map(|j| {
            let x = j as f64 * scale;
            let k = (x.floor() as usize).min(src.len() - 2);
            let t = (x - k as f64) as f32;
            src[k] + (src[k + 1] - src[k]) * t
        })
        .collect()
}

/// How inputs with different rates are brought to one (`srselect`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SrSelect {
    /// Resample every input to input 0's rate.
    #[default]
    First,
    Max,
    Min,
    /// Refuse to cook when rates differ.
    Err,
}

/// The error of `srselect = "err"`.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("inputs have different sample rates ({0} and {1}) and srselect is \"err\"")]
pub struct RateMismatch(pub f64, pub f64);

/// Brings `inputs` to one rate as `mode` says. Inputs already at that rate are borrowed, so the
/// common case (one rate everywhere) copies nothing.
pub fn match_rates<'a>(
    inputs: &[&'a ChopData],
    mode: SrSelect,
) -> Result<Vec<std::borrow::Cow<'a, ChopData>>, RateMismatch> {
    use std::borrow::Cow;
    let Some(first) = inputs.first() else {
        return Ok(Vec::new());
    };
    let target = match mode {
        SrSelect::First => first.rate,
        SrSelect::Max => inputs.iter().map(|d| d.rate).fold(f64::MIN, f64::max),
        SrSelect::Min => inputs.iter().map(|d| d.rate).fold(f64::MAX, f64::min),
        SrSelect::Err => {
            if let Some(other) = inputs.iter().find(|d| d.rate != first.rate) {
                return Err(RateMismatch(first.rate, other.rate));
            }
            first.rate
        }
    };
    Ok(inputs
        .iter()
        .map(|d| {
            if d.rate == target {
                Cow::Borrowed(*d)
            } else {
                Cow::Owned(d.resampled(target))
            }
        })
        .collect())
}

/// Makes a channel name legal: letters, digits, `_`, `-`, `:`, `/`; anything else becomes `_`.
pub fn sanitize_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rate: f64, chans: &[(&str, &[f32])]) -> ChopData {
        let mut d = ChopData::new(rate);
        d.set_num_samples(chans.first().map_or(1, |c| c.1.len()));
        for (n, v) in chans {
            d.append_with(n, v);
        }
        d
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("mixer/fader 1"), "mixer/fader_1");
        assert_eq!(sanitize_name("geo1/transform1:tx"), "geo1/transform1:tx");
        assert_eq!(sanitize_name("a.b#c-d"), "a_b_c-d");
        assert_eq!(sanitize_name("é"), "_");
    }

    #[test]
    fn append_remove_and_index() {
        let mut d = ChopData::new(60.0);
        d.set_num_samples(3);
        let a = d.append_with("a", &[1.0, 2.0, 3.0]);
        let b = d.append_with("b", &[4.0]);
        assert_eq!((a, b), (0, 1));
        assert_eq!(d.chan(1), &[4.0, 4.0, 4.0]);
        assert_eq!(d.last(0), 3.0);
        d.remove_chan(0);
        assert_eq!(d.index_of("b"), Some(0));
        assert_eq!(d.index_of("a"), None);
        assert_eq!(d.samples().len(), 3);
    }

    #[test]
    fn equal_means_the_same_bits_so_a_nan_that_stays_is_no_change() {
        let mut a = ChopData::new(60.0);
        a.append_with("x", &[f32::NAN]);
        let mut b = ChopData::new(60.0);
        b.copy_from(&a);
        assert_eq!(a, b, "a NaN kept is no change");
        b.chan_mut(0)[0] = 1.0;
        assert_ne!(a, b);
        a.chan_mut(0)[0] = 0.0;
        b.chan_mut(0)[0] = -0.0;
        assert_ne!(a, b, "a sign is a change (an export sends it)");
    }

    #[test]
    fn a_layout_id_changes_with_the_names_and_travels_with_a_copy() {
        let mut a = ChopData::new(60.0);
        a.append_chan("x");
        let id = a.layout_id();
        a.chan_mut(0)[0] = 2.0;
        a.append_chan("x");
        assert_eq!(
            a.layout_id(),
            id,
            "samples and a replaced channel keep the layout"
        );
        let mut b = ChopData::new(60.0);
        b.copy_from(&a);
        assert_eq!(b.layout_id(), id);
        assert_eq!(a.clone().layout_id(), id);
        a.append_chan("y");
        assert_ne!(a.layout_id(), id);
        b.copy_from(&a);
        assert_eq!((b.names(), b.layout_id()), (a.names(), a.layout_id()));
        b.remove_chan(0);
        assert_ne!(b.layout_id(), a.layout_id());
        b.clear();
        assert_ne!(b.layout_id(), a.layout_id());
    }

    #[test]
    fn append_same_name_replaces() {
        let mut d = ChopData::new(60.0);
        d.append_with("a", &[5.0]);
        assert_eq!(d.append_chan("a"), 0);
        assert_eq!(d.num_chans(), 1);
        assert_eq!(d.chan(0), &[0.0]);
    }

    #[test]
    fn set_num_samples_holds_last_value() {
        let mut d = data(60.0, &[("a", &[1.0, 2.0]), ("b", &[3.0, 4.0])]);
        d.set_num_samples(4);
        assert_eq!(d.chan(0), &[1.0, 2.0, 2.0, 2.0]);
        assert_eq!(d.chan(1), &[3.0, 4.0, 4.0, 4.0]);
        d.set_num_samples(1);
        assert_eq!(d.samples(), &[1.0, 3.0]);
    }

    #[test]
    fn linear_resampling_keeps_end_points() {
        assert_eq!(resample_slice(&[0.0, 1.0], 3), vec![0.0, 0.5, 1.0]);
        assert_eq!(resample_slice(&[0.0, 2.0, 4.0], 2), vec![0.0, 4.0]);
        assert_eq!(resample_slice(&[7.0], 4), vec![7.0; 4]);
        let d = data(30.0, &[("a", &[0.0, 1.0, 2.0])]);
        let r = d.resampled(60.0);
        assert_eq!(r.num_samples(), 6);
        assert_eq!(r.chan(0)[0], 0.0);
        assert_eq!(r.chan(0)[5], 2.0);
        assert_eq!(r.rate, 60.0);
    }

    #[test]
    fn srselect_modes() {
        let a = data(60.0, &[("a", &[0.0, 1.0])]);
        let b = data(120.0, &[("b", &[0.0, 1.0, 2.0, 3.0])]);
        let first = match_rates(&[&a, &b], SrSelect::First).unwrap();
        assert_eq!(first[1].rate, 60.0);
        assert_eq!(first[1].num_samples(), 2);
        let max = match_rates(&[&a, &b], SrSelect::Max).unwrap();
        assert_eq!((max[0].rate, max[0].num_samples()), (120.0, 4));
        assert!(matches!(max[1], std::borrow::Cow::Borrowed(_)));
        let min = match_rates(&[&a, &b], SrSelect::Min).unwrap();
        assert_eq!(min[1].rate, 60.0);
        assert_eq!(
            match_rates(&[&a, &b], SrSelect::Err)
                .unwrap_err()
                .to_string(),
            "inputs have different sample rates (60 and 120) and srselect is \"err\""
        );
    }

    #[test]
    fn scope_pass_through_appends_unscoped_channels() {
        let input = data(60.0, &[("tx", &[1.0]), ("ty", &[2.0]), ("debug", &[3.0])]);
        let mut out = data(60.0, &[("tx", &[10.0])]);
        out.pass_through(&input, &Pattern::new("t*").unwrap());
        assert_eq!(out.names(), &["tx", "debug"]);
        assert_eq!(out.chan(1), &[3.0]);
        // The operator's own channel of the same name wins.
        let mut own = data(60.0, &[("debug", &[9.0])]);
        own.pass_through(&input, &Pattern::new("t*").unwrap());
        assert_eq!(own.chan(0), &[9.0]);
    }
}
