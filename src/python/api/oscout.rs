//! The OSC Out DAT's members on the DAT object (TouchDesigner's `oscoutDAT`): `sendOSC(address,
//! args, asBundle=False, useNonStandardTypes=True)` and `sendBytes(*messages)`. What they send
//! is queued in [`crate::python::outbox`] for the operator, which the graph sends to its
//! destination with the frame's exports. On any other DAT they raise.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use rosc::{OscArray, OscBundle, OscMessage, OscPacket, OscTime, OscType};

use super::dat::DatHandle;
use super::runtime::td_error;
use crate::cook::OscOutgoing;
use crate::osc::MAX_DEPTH;
use crate::python::outbox;

/// The kind whose DATs have these members.
const KIND: &str = "oscout";

#[pymethods]
impl DatHandle {
    /// Sends `args` to `address`: one message, or with `asBundle` a bundle of one message per
    /// argument. Returns the bytes sent. Ints beyond int32 go as int64 (`h`), booleans as
    /// `T`/`F`, None as `N` and lists as arrays, unless `useNonStandardTypes` is false: then
    /// booleans go as int32 and the rest is refused.
    #[pyo3(name = "sendOSC", signature = (address, args=None, asBundle=false, useNonStandardTypes=true))]
    #[allow(non_snake_case)]
    fn send_osc(
        &self,
        py: Python<'_>,
        address: &str,
        args: Option<&Bound<'_, PyAny>>,
        asBundle: bool,
        useNonStandardTypes: bool,
    ) -> PyResult<usize> {
        self.oscout(py, "sendOSC")?;
        if !address.starts_with('/') {
            return Err(PyValueError::new_err(format!(
                "sendOSC: an OSC address starts with \"/\": {address:?}"
            )));
        }
        let list: Vec<Bound<'_, PyAny>> = match args {
            None => Vec::new(),
            Some(a) if a.is_instance_of::<PyList>() || a.is_instance_of::<PyTuple>() => {
                a.try_iter()?.collect::<PyResult<_>>()?
            }
            Some(a) => vec![a.clone()],
        };
        let args = list
            .iter()
            .map(|a| osc_arg(a, useNonStandardTypes, 0))
            .collect::<PyResult<Vec<_>>>()?;
        let message = |args| OscMessage {
            addr: address.to_string(),
            args,
        };
        let (item, bytes) = if asBundle {
            let bundle = OscPacket::Bundle(OscBundle {
                timetag: OscTime::from((0, 1)),
                content: args
                    .into_iter()
                    .map(|a| OscPacket::Message(message(vec![a])))
                    .collect(),
            });
            let b = encode(&bundle)?;
            (OscOutgoing::Packet(b.clone()), b.len())
        } else {
            let m = message(args);
            let n = encode(&OscPacket::Message(m.clone()))?.len();
            (OscOutgoing::Message(m), n)
        };
        outbox::push(&self.name, vec![item]).map_err(|e| td_error(py, format!("sendOSC: {e}")))?;
        Ok(bytes)
    }

    /// Sends each of `messages` (bytes, or a str as UTF-8) as a packet of its own, as it is.
    /// Returns the bytes sent.
    #[pyo3(name = "sendBytes", signature = (*messages))]
    fn send_bytes(&self, py: Python<'_>, messages: &Bound<'_, PyTuple>) -> PyResult<usize> {
        self.oscout(py, "sendBytes")?;
        let mut items = Vec::with_capacity(messages.len());
        let mut total = 0;
        for m in messages.iter() {
            let b: Vec<u8> = if let Ok(s) = m.cast::<PyString>() {
                s.to_str()?.as_bytes().to_vec()
            } else if let Ok(b) = m.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else if let Ok(b) = m.cast::<PyByteArray>() {
                b.to_vec()
            } else {
                return Err(PyTypeError::new_err(
                    "sendBytes: each message is bytes, a bytearray or a str",
                ));
            };
            total += b.len();
            items.push(OscOutgoing::Packet(b));
        }
        outbox::push(&self.name, items).map_err(|e| td_error(py, format!("sendBytes: {e}")))?;
        Ok(total)
    }
}

impl DatHandle {
    /// Refuses the OSC Out members on a DAT of another kind.
    fn oscout(&self, py: Python<'_>, member: &str) -> PyResult<()> {
        let kind = self.node_kind()?;
        if kind == KIND {
            Ok(())
        } else {
            Err(td_error(
                py,
                format!(
                    "{member}: \"{}\" is a {kind} operator; {member} is a member of OSC Out DATs (type = \"oscout\")",
                    self.name
                ),
            ))
        }
    }
}

fn encode(p: &OscPacket) -> PyResult<Vec<u8>> {
    rosc::encoder::encode(p).map_err(|e| PyValueError::new_err(format!("sendOSC: {e}")))
}

/// A Python value as an OSC argument.
fn osc_arg(a: &Bound<'_, PyAny>, nonstandard: bool, depth: usize) -> PyResult<OscType> {
    let refuse = |what: &str| {
        Err(PyTypeError::new_err(format!(
            "sendOSC: {what} needs useNonStandardTypes=True"
        )))
    };
    // bool first: a Python bool is an int too.
    if let Ok(b) = a.cast::<PyBool>() {
        let b = b.is_true();
        return Ok(if nonstandard {
            OscType::Bool(b)
        } else {
            OscType::Int(i32::from(b))
        });
    }
    if a.is_instance_of::<PyInt>() {
        let v: i64 = a
            .extract()
            .map_err(|_| PyValueError::new_err("sendOSC: an int beyond 64 bits"))?;
        return match i32::try_from(v) {
            Ok(i) => Ok(OscType::Int(i)),
            Err(_) if nonstandard => Ok(OscType::Long(v)),
            Err(_) => refuse("an int beyond 32 bits"),
        };
    }
    if a.is_instance_of::<PyFloat>() {
        return Ok(OscType::Float(a.extract::<f64>()? as f32));
    }
    if let Ok(s) = a.cast::<PyString>() {
        return Ok(OscType::String(s.to_str()?.to_string()));
    }
    if let Ok(b) = a.cast::<PyBytes>() {
        return Ok(OscType::Blob(b.as_bytes().to_vec()));
    }
    if let Ok(b) = a.cast::<PyByteArray>() {
        return Ok(OscType::Blob(b.to_vec()));
    }
    if a.is_none() {
        return if nonstandard {
            Ok(OscType::Nil)
        } else {
            refuse("None")
        };
    }
    if a.is_instance_of::<PyList>() || a.is_instance_of::<PyTuple>() {
        if !nonstandard {
            return refuse("a list");
        }
        if depth >= MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "sendOSC: arrays nested deeper than {MAX_DEPTH}"
            )));
        }
        let content = a
            .try_iter()?
            .map(|x| osc_arg(&x?, nonstandard, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(OscType::Array(OscArray { content }));
    }
    // numpy scalars and anything else that says it is a number.
    if let Ok(v) = a.extract::<f64>() {
        return Ok(OscType::Float(v as f32));
    }
    Err(PyTypeError::new_err(format!(
        "sendOSC: cannot send a {} (ints, floats, strings, bytes, booleans, None and lists)",
        a.get_type().name()?
    )))
}
