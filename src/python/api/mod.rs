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

/// TouchDesigner's family of a class of operators: `family` and the `isCOMP`/`isCHOP`/`isDAT`
/// that follow from it, as one more `#[pymethods]` block of `$ty`.
macro_rules! family {
    ($ty:ty, $family:literal) => {
        #[pyo3::pymethods]
        impl $ty {
            #[getter]
            fn family(&self) -> &'static str {
                $family
            }

            #[getter(isCOMP)]
            fn is_comp(&self) -> bool {
                $family == "COMP"
            }

            #[getter(isCHOP)]
            fn is_chop(&self) -> bool {
                $family == "CHOP"
            }

            #[getter(isDAT)]
            fn is_dat(&self) -> bool {
                $family == "DAT"
            }
        }
    };
}
pub(crate) use family;
