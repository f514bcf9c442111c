//! JSON for the codecs on the server and in the unit tests: serde_json, which the server links anyway. Same
//! surface as `browser` (the wasm's `JSON.parse`), so the rules in `codec` run unchanged on both.

/// A parsed JSON value.
pub struct Value(serde_json::Value);

pub fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().map(Value)
}

impl Value {
    pub fn is_object(&self) -> bool {
        self.0.is_object()
    }

    /// The field `name` of an object; `None` for a missing field or a value that is no object.
    pub fn field(&self, name: &str) -> Option<Value> {
        self.0.as_object()?.get(name).cloned().map(Value)
    }

    pub fn string(&self) -> Option<String> {
        self.0.as_str().map(str::to_owned)
    }

    /// The number as a double, as the browser holds every JSON number.
    pub fn number(&self) -> Option<f64> {
        self.0.as_f64()
    }

    pub fn boolean(&self) -> Option<bool> {
        self.0.as_bool()
    }

    /// The items of an array.
    pub fn items(&self) -> Option<impl Iterator<Item = Value> + '_> {
        Some(self.0.as_array()?.iter().cloned().map(Value))
    }
}

/// Appends `text` as a JSON string.
pub fn push_string(out: &mut String, text: &str) {
    // Writing a `str` cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// A form body, written by rust-url's serializer (the URL standard's, as `URLSearchParams` is).
pub fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}
