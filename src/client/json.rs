//! JSON in the browser, read with the browser's own `JSON.parse` and written by hand: serde_json's reader (its
//! per-type deserializers, and the float formatting its error messages link in) was the largest part of the wasm
//! that the page could do without (BENCHMARKS.md). The shapes are the API's: `Message`, the objects of
//! `remote::Answer`, an `ApiError`.

use js_sys::{Array, Reflect, JSON};
use wasm_bindgen::JsValue;

use crate::shared::domain::Message;
use crate::shared::error::{ApiError, ErrorKind};

/// A parsed JSON object.
pub struct Object(JsValue);

/// `text` as a JSON object, if it is one.
pub fn object(text: &str) -> Option<Object> {
    JSON::parse(text).ok().filter(JsValue::is_object).map(Object)
}

fn array(value: JsValue) -> Option<Array> {
    Array::is_array(&value).then(|| Array::from(&value))
}

/// `text` as a JSON array of messages.
pub fn messages(text: &str) -> Option<Vec<Message>> {
    array(JSON::parse(text).ok()?)?.iter().map(|m| Object(m).message()).collect()
}

impl Object {
    fn get(&self, name: &str) -> JsValue {
        if !self.0.is_object() {
            return JsValue::UNDEFINED;
        }
        Reflect::get(&self.0, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
    }

    pub fn str(&self, name: &str) -> Option<String> {
        self.get(name).as_string()
    }

    /// A whole number from 0 to 2^53 (exact in JSON's numbers).
    pub fn u64(&self, name: &str) -> Option<u64> {
        let n = self.get(name).as_f64()?;
        ((0.0..=9_007_199_254_740_992.0).contains(&n) && n == (n as u64) as f64).then_some(n as u64)
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        array(self.get(name))?.iter().map(|s| s.as_string()).collect()
    }

    pub fn message(&self) -> Option<Message> {
        Some(Message { id: self.u64("id")?, user: self.str("user")?, text: self.str("text")?, at: self.str("at")? })
    }

    /// The object as the API's error body (`{"kind": ..., "message": ...}`).
    pub fn error(&self) -> Option<ApiError> {
        Some(ApiError::new(ErrorKind::from_code(&self.str("kind")?)?, self.str("message")?))
    }
}

/// Appends `messages` as a JSON array, as `messages` reads it.
pub fn push_messages(out: &mut String, messages: &[Message]) {
    out.push('[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        out.push_str(&m.id.to_string());
        for (name, value) in [("user", &m.user), ("text", &m.text), ("at", &m.at)] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            let quoted = JSON::stringify(&JsValue::from_str(value));
            out.push_str(&quoted.map(String::from).unwrap_or_default());
        }
        out.push('}');
    }
    out.push(']');
}
