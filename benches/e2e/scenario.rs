//! Scenarios: the config chopd runs and the traffic the benchmark sends.
//!
//! Every scenario exports to the `[destinations.bench]` the benchmark listens on (prefix
//! `/out`). The benchmark recognises:
//! - `/out/bench/cN` = the value of bench channel N (sequence numbers, see traffic.rs); whatever
//!   operator exports them, the channel must be named `bench/cN` (autoname → `/out/bench/cN`);
//! - `/out/NAME` = an Info CHOP channel. The Info CHOP of the daemon (`op = "/"`) is listed
//!   **first** in the config so its `frame` channel is the first message of every frame's export
//!   (exporters run in config order): that is how the receiver splits the stream into frames.
//!
//! To add a scenario (a Script CHOP in the path, MIDI through JACK, …): add a variant, its name
//! in `ALL`/`name`, its operators in `operators`, and its traffic in `load` (a new `Load` in
//! traffic.rs if it is not OSC). `--config-extra FILE` appends TOML to any scenario without code.

use crate::traffic::{Load, OscLoad};
use crate::Opts;

/// Address prefix of the benchmark's destination.
pub const PREFIX: &str = "/out";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scenario {
    /// OSC → `oscin` → export: the issue's end-to-end target.
    Osc,
    /// The same graph with no traffic: the daemon's idle cost.
    Idle,
    /// OSC → `oscin` → Script CHOP (numpy ×2 of input 0) → export: Python in the path
    /// (the soak). The receiver halves the values back into sequence numbers.
    Script,
}

pub const ALL: &[Scenario] = &[Scenario::Osc, Scenario::Idle, Scenario::Script];

/// The Script CHOP of the `script` scenario, written into the benchmark's temp dir.
/// `copy` + in-place ×2 rather than `copyNumpyArray(inputs[0].numpyArray() * 2)`: the copy keeps
/// the input's channel names (`bench/cN`) when the `oscin` grows new channels, where
/// `copyNumpyArray` would name the new ones `chan1`, `chan2`… (about 2 µs more per cook).
pub const DOUBLE_PY: &str = "\
# Written by the chopd e2e benchmark (scenario \"script\"): every channel of input 0 times 2.
def onCook(scriptOp):
    scriptOp.copy(scriptOp.inputs[0])
    a = scriptOp.numpyArray()
    a *= 2
";

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Osc => "osc",
            Scenario::Idle => "idle",
            Scenario::Script => "script",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        ALL.iter().copied().find(|x| x.name() == s)
    }

    pub fn default_rate(self) -> f64 {
        match self {
            Scenario::Osc | Scenario::Script => 1000.0,
            Scenario::Idle => 60.0,
        }
    }

    /// Whether the benchmark sends traffic (and measures latency and loss).
    pub fn has_traffic(self) -> bool {
        match self {
            Scenario::Osc | Scenario::Script => true,
            Scenario::Idle => false,
        }
    }

    /// What the graph multiplies the sent values by (the receiver divides it back out).
    pub fn value_scale(self) -> f32 {
        match self {
            Scenario::Script => 2.0,
            Scenario::Osc | Scenario::Idle => 1.0,
        }
    }

    /// Files written next to the config (name, text).
    pub fn files(self) -> Vec<(String, String)> {
        match self {
            Scenario::Script => vec![("double.py".into(), DOUBLE_PY.into())],
            Scenario::Osc | Scenario::Idle => Vec::new(),
        }
    }

    /// The whole config: head, Info CHOPs, this scenario's operators, `--config-extra`.
    pub fn config(self, o: &Opts, dest_port: u16) -> String {
        let mut c = format!(
            r#"# Written by the chopd e2e benchmark (scenario "{name}").
rate = {rate}
watch = false

[destinations.bench]
host = "127.0.0.1"
port = {dest_port}
prefix = "{PREFIX}"
"#,
            name = self.name(),
            rate = o.rate,
        );
        if o.react {
            c = c.replace("watch = false\n", "watch = false\nreact = true\n");
        }
        if let Some(m) = o.max_packet {
            c += &format!("max_packet = {m}\n");
        }
        if o.info {
            c += r#"
# First, so that its `frame` channel starts every frame's export.
[[operator]]
name = "clock"
type = "info"
op = "/"
export = { method = "autoname", root = "bench" }

[[operator]]
name = "bench_info"
type = "info"
op = "bench"
export = { method = "autoname", root = "bench" }
"#;
        }
        c += &self.operators(o);
        if let Some(extra) = &o.config_extra {
            c += "\n# --config-extra\n";
            c += extra;
        }
        c
    }

    /// This scenario's operators. The `oscin` must be named `bench` (the Info CHOP inspects it
    /// and the benchmark sends to its bound port).
    fn operators(self, o: &Opts) -> String {
        let ops = self.udp_operators(o);
        if o.over_tcp {
            // The same graph, its OSC In on TCP (SLIP framing, the default).
            ops.replacen(
                "type = \"oscin\"\n",
                "type = \"oscin\"\nprotocol = \"tcp\"\n",
                1,
            )
        } else {
            ops
        }
    }

    fn udp_operators(self, o: &Opts) -> String {
        match self {
            Scenario::Osc | Scenario::Idle => format!(
                r#"
[[operator]]
name = "bench"
type = "oscin"
port = 0
local_address = "127.0.0.1"
max_channels = {max}
export = {{ method = "autoname", root = "bench" }}
"#,
                max = (o.channels * 2).max(10_000)
            ),
            // The oscin is not exported; the Script CHOP's output (same channel names) is.
            Scenario::Script => format!(
                r#"
[[operator]]
name = "bench"
type = "oscin"
port = 0
local_address = "127.0.0.1"
max_channels = {max}

[[operator]]
name = "double"
type = "script"
callbacks = "double.py"
inputs = ["bench"]
export = {{ method = "autoname", root = "bench" }}
"#,
                max = (o.channels * 2).max(10_000)
            ),
        }
    }

    /// The traffic source, given the ports chopd bound.
    pub fn load(
        self,
        o: &Opts,
        ports: &std::collections::HashMap<String, u16>,
    ) -> Result<Option<Box<dyn Load>>, String> {
        if !self.has_traffic() {
            return Ok(None);
        }
        let port = *ports
            .get("bench")
            .ok_or("chopd did not report the port of oscin \"bench\"")?;
        match self {
            Scenario::Osc | Scenario::Script => Ok(Some(Box::new(
                OscLoad::new(port, o.channels, o.over_tcp)
                    .map_err(|e| format!("sender socket: {e}"))?,
            ))),
            Scenario::Idle => Ok(None),
        }
    }
}
