//! `store()`d values as JSON, so they can outlive the process: what converts (None, bool, int
//! within 64 bits, finite float, str, and lists, tuples and str-keyed dicts of those, at most
//! [`MAX_DEPTH`] deep) and back. A tuple comes back as a list: JSON has one sequence.
//!
//! Conversion is charged against a byte budget as it goes, at least what the JSON text will
//! take, so an oversized value costs no more than the budget to find out about.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Value};

use super::registry;

/// Deeper nesting is not kept (and a list that contains itself ends here).
pub const MAX_DEPTH: usize = 32;

/// Why a stored value is not kept.
#[derive(Debug, PartialEq)]
pub enum Left {
    /// Not one of the kinds JSON holds; the text says what it was.
    NotJson(String),
    /// Beyond the byte budget.
    TooLarge,
}

/// The storage of one operator as JSON, and the keys left out.
#[derive(Debug, Default)]
pub struct StorageJson {
    pub values: Map<String, Value>,
    /// (key, why) of values that do not convert.
    pub not_json: Vec<(String, String)>,
    /// Keys whose value did not fit the budget left.
    pub too_large: Vec<String>,
}

/// The storage of `name` as JSON (`None` when nothing was ever stored there), each key's value
/// charged to `budget` (bytes); a value that does not fit is left out and its charge refunded.
pub fn storage_json(py: Python<'_>, name: &str, budget: &mut usize) -> Option<StorageJson> {
    let dict = registry::existing_storage(py, name)?;
    let mut out = StorageJson::default();
    for (k, v) in dict.iter() {
        let Ok(key) = k
            .cast::<PyString>()
            .map(|s| s.to_string_lossy().into_owned())
        else {
            let shown = k.repr().map_or_else(|_| "?".into(), |r| r.to_string());
            out.not_json.push((shown, "the key is not a str".into()));
            continue;
        };
        let before = *budget;
        // The key, its quotes, a colon and a comma.
        match charge(budget, json_str_len(&key) + 2).and_then(|()| to_json(&v, 0, budget)) {
            Ok(j) => {
                out.values.insert(key, j);
            }
            Err(Left::NotJson(why)) => {
                *budget = before;
                out.not_json.push((key, why));
            }
            Err(Left::TooLarge) => {
                *budget = before;
                out.too_large.push(key);
            }
        }
    }
    Some(out)
}

/// Puts `values` into the storage of `name`, over what is there.
pub fn restore_storage(py: Python<'_>, name: &str, values: &Map<String, Value>) -> PyResult<()> {
    let dict = registry::storage(py, name);
    for (k, v) in values {
        dict.set_item(k, from_json(py, v)?)?;
    }
    Ok(())
}

fn charge(budget: &mut usize, n: usize) -> Result<(), Left> {
    *budget = budget.checked_sub(n).ok_or(Left::TooLarge)?;
    Ok(())
}

/// Bytes of `s` as a JSON string, quotes included, at most (`\u00XX` for control characters).
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// One Python value as JSON, `depth` levels down, charging at least its JSON length to
/// `budget`.
pub fn to_json(v: &Bound<'_, PyAny>, depth: usize, budget: &mut usize) -> Result<Value, Left> {
    if depth > MAX_DEPTH {
        return Err(Left::NotJson(format!("nested deeper than {MAX_DEPTH}")));
    }
    if v.is_none() {
        charge(budget, 4)?;
        return Ok(Value::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        charge(budget, 5)?;
        return Ok(Value::Bool(b.is_true()));
    }
    if v.cast::<PyInt>().is_ok() {
        charge(budget, 20)?;
        return match (v.extract::<i64>(), v.extract::<u64>()) {
            (Ok(i), _) => Ok(Value::from(i)),
            (_, Ok(u)) => Ok(Value::from(u)),
            _ => Err(Left::NotJson("an int beyond 64 bits".into())),
        };
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        charge(budget, 24)?;
        return serde_json::Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| Left::NotJson("a float that is not finite".into()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        let s = s
            .to_str()
            .map_err(|_| Left::NotJson("a str that is not valid UTF-8".into()))?;
        // Escapes only lengthen it: a string longer than the budget is refused unscanned.
        if s.len() + 2 > *budget {
            return Err(Left::TooLarge);
        }
        charge(budget, json_str_len(s))?;
        return Ok(Value::String(s.to_string()));
    }
    let seq = |items: Vec<Bound<'_, PyAny>>, budget: &mut usize| -> Result<Value, Left> {
        charge(budget, 2 + items.len())?;
        items
            .iter()
            .map(|x| to_json(x, depth + 1, budget))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    };
    if let Ok(l) = v.cast::<PyList>() {
        return seq(l.iter().collect(), budget);
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        return seq(t.iter().collect(), budget);
    }
    if let Ok(d) = v.cast::<PyDict>() {
        charge(budget, 2)?;
        let mut m = Map::new();
        for (k, x) in d.iter() {
            let Ok(k) = k
                .cast::<PyString>()
                .map(|s| s.to_string_lossy().into_owned())
            else {
                return Err(Left::NotJson("a dict with a key that is not a str".into()));
            };
            charge(budget, json_str_len(&k) + 2)?;
            m.insert(k, to_json(&x, depth + 1, budget)?);
        }
        return Ok(Value::Object(m));
    }
    let ty = v
        .get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string());
    Err(Left::NotJson(format!("a {ty}")))
}

/// A JSON value as the Python value it came from (lists for tuples).
pub fn from_json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (_, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(0.0).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let items = a
                .iter()
                .map(|x| from_json(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, from_json(py, x)?)?;
            }
            d.into_any()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(py: Python<'_>, expr: &str, budget: usize) -> Result<Value, Left> {
        let v = py
            .eval(&std::ffi::CString::new(expr).unwrap(), None, None)
            .unwrap();
        let mut b = budget;
        let r = to_json(&v, 0, &mut b);
        if let Ok(j) = &r {
            let len = serde_json::to_string(j).unwrap().len();
            assert!(
                budget - b >= len,
                "{expr}: charged {} for {len}",
                budget - b
            );
            let back = from_json(py, j).unwrap();
            let mut b2 = usize::MAX;
            assert_eq!(to_json(&back, 0, &mut b2).as_ref(), Ok(j), "{expr}");
        }
        r
    }

    #[test]
    fn values_that_json_holds_go_there_and_back_and_the_rest_say_why() {
        crate::python::ensure_init().unwrap();
        Python::attach(|py| {
            let big = 1 << 20;
            assert_eq!(
                conv(
                    py,
                    r#"{"a": [1, 2.5, True, None, "x\"\n"], "b": (3, "t")}"#,
                    big
                ),
                Ok(serde_json::json!({"a": [1, 2.5, true, null, "x\"\n"], "b": [3, "t"]}))
            );
            assert_eq!(conv(py, "2**64 - 1", big), Ok(serde_json::json!(u64::MAX)));
            assert_eq!(
                conv(py, "2**64", big),
                Err(Left::NotJson("an int beyond 64 bits".into()))
            );
            assert_eq!(
                conv(py, "float('nan')", big),
                Err(Left::NotJson("a float that is not finite".into()))
            );
            assert_eq!(conv(py, "{1, 2}", big), Err(Left::NotJson("a set".into())));
            assert!(matches!(conv(py, "{1: 2}", big), Err(Left::NotJson(_))));
            assert!(matches!(
                conv(
                    py,
                    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                    big
                ),
                Err(Left::NotJson(_))
            ));
            assert_eq!(conv(py, "'x' * 100", 50), Err(Left::TooLarge));
            assert_eq!(conv(py, "list(range(1000))", 100), Err(Left::TooLarge));
        });
    }
}
