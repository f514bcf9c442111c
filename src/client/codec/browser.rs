//! JSON for the codecs in the browser, read with the browser's own `JSON.parse` and quoted with `JSON.stringify`:
//! serde_json's reader (its per-type deserializers, and the float formatting its error messages link in) was the
//! largest part of the wasm that the page could do without (BENCHMARKS.md). Same surface as `server`.

use js_sys::{Array, Reflect, JSON};
use wasm_bindgen::JsValue;

/// A parsed JSON value.
pub struct Value(JsValue);

pub fn parse(text: &str) -> Option<Value> {
    JSON::parse(text).ok().map(Value)
}

impl Value {
    pub fn is_object(&self) -> bool {
        self.0.is_object()
    }

    /// The field `name` of an object; `None` for a missing field (`undefined`) or a value that is no object, as
    /// on the server, so an optional field reads the same on both.
    pub fn field(&self, name: &str) -> Option<Value> {
        if !self.0.is_object() {
            return None;
        }
        Reflect::get(&self.0, &JsValue::from_str(name)).ok().filter(|value| !value.is_undefined()).map(Value)
    }

    pub fn string(&self) -> Option<String> {
        self.0.as_string()
    }

    pub fn number(&self) -> Option<f64> {
        self.0.as_f64()
    }

    pub fn boolean(&self) -> Option<bool> {
        self.0.as_bool()
    }

    /// The items of an array.
    pub fn items(&self) -> Option<impl Iterator<Item = Value>> {
        Array::is_array(&self.0).then(|| Array::from(&self.0).into_iter().map(Value))
    }
}

/// Appends `text` as a JSON string.
pub fn push_string(out: &mut String, text: &str) {
    let quoted = JSON::stringify(&JsValue::from_str(text));
    out.push_str(&quoted.map(String::from).unwrap_or_default());
}

/// A form body, written by the browser's `URLSearchParams`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let Ok(params) = web_sys::UrlSearchParams::new() else { return String::new() };
    for (name, value) in fields {
        params.append(name, value);
    }
    params.to_string().into()
}
