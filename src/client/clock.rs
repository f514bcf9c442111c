//! Message times in the reader's own time zone, and the reader's clock (`now_secs`). Only the browser knows that
//! zone, so the server renders a row's `<time datetime>` with no text, and the tab fills it in once hydrated: the
//! HTML the server sent and the one the tab hydrates are the same (no hydration mismatch), and no time is ever shown
//! in the wrong zone. The time's box keeps its width while empty (style/main.css), so filling it in moves nothing.

/// A stored time (RFC 3339, UTC) as the reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    /// "14:05" today, the date otherwise.
    pub short: String,
    /// The whole date and time, for the tooltip.
    pub full: String,
    /// The local calendar day, for day separators: "Today", "Yesterday" or the date.
    pub day: String,
}

#[cfg(feature = "hydrate")]
pub fn local(at: &str) -> Option<LocalTime> {
    use js_sys::Date;
    use wasm_bindgen::JsValue;

    let date = Date::new(&JsValue::from_str(at));
    if date.get_time().is_nan() {
        return None;
    }
    let day_of = |d: &Date| (d.get_full_year(), d.get_month(), d.get_date());
    let now = Date::new_0();
    let yesterday = Date::new(&JsValue::from_f64(now.get_time() - 86_400_000.0));
    let date_text = String::from(date.to_locale_date_string("default", &JsValue::UNDEFINED));
    let day = if day_of(&date) == day_of(&now) {
        "Today".to_owned()
    } else if day_of(&date) == day_of(&yesterday) {
        "Yesterday".to_owned()
    } else {
        date_text.clone()
    };
    let short = if day == "Today" { format!("{:02}:{:02}", date.get_hours(), date.get_minutes()) } else { date_text };
    Some(LocalTime { short, full: String::from(date.to_locale_string("default", &JsValue::UNDEFINED)), day })
}

/// On the server the reader's zone is unknown: nothing is rendered.
#[cfg(not(feature = "hydrate"))]
pub fn local(_at: &str) -> Option<LocalTime> {
    None
}

/// Seconds since 1970 by the reader's clock: what a sign-in's expiry (`Joined::expires`) is counted down with.
#[cfg(feature = "hydrate")]
pub fn now_secs() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// On the server nothing counts down (no tab signs in while the page renders).
#[cfg(not(feature = "hydrate"))]
pub fn now_secs() -> f64 {
    0.0
}
