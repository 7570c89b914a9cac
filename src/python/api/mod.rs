//! The TouchDesigner object classes a callback sees: operators ([`op`]), channels ([`channel`]),
//! custom parameter pages and parameters ([`par`], groups in [`pargroup`]), table and text
//! DATs and their cells ([`dat`]), numpy views of channel data ([`numpy`]) and
//! the module globals of a callbacks file ([`globals`]).
//!
//! These are the pyo3 classes. They may refer to each other the way TouchDesigner's own objects
//! do (an operator has parameters, a parameter has an owner operator), and they stand on the
//! floor of `python/` (`scope`, `registry`, `pars`), which must never import from here.

pub mod cell;
pub mod channel;
pub mod comp;
pub mod dat;
pub mod datfind;
pub mod datmodule;
pub mod expr;
pub mod globals;
pub mod midi;
pub mod numpy;
pub mod op;
pub mod oscout;
pub mod par;
pub mod pargroup;
pub mod runtime;
