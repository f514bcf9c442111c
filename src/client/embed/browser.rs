//! The height, told from the tab. `ResizeObserver` is reached through `js_sys::Reflect`, as `navigator.locks` is in
//! `relay`: one constructor and one method do not warrant another web-sys feature (and its rebuild).

use js_sys::{Array, Function, Object, Reflect};
use leptos::html::Main;
use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::HtmlElement;

use crate::shared::domain::FeedName;
use crate::shared::wire;

pub fn report_height(main: NodeRef<Main>, feed: FeedName) {
    Effect::new(move |_| {
        let Some(element) = main.get() else { return };
        // A page of its own (the embed's URL opened in a tab) has no one to tell.
        let Some(parent) = window().parent().ok().flatten().filter(|parent| *parent != window()) else { return };
        let element: HtmlElement = element.unchecked_into();
        let feed = feed.to_string();
        let told = std::cell::Cell::new(-1);
        let tell = Closure::<dyn Fn()>::new({
            let element = element.clone();
            move || {
                let height = element.offset_height();
                // The observer also reports changes of width alone.
                if told.replace(height) == height {
                    return;
                }
                let message = Object::new();
                for (key, value) in [
                    ("type", JsValue::from_str(wire::HEIGHT_MESSAGE)),
                    ("feed", JsValue::from_str(&feed)),
                    ("height", JsValue::from(height)),
                ] {
                    let _ = Reflect::set(&message, &key.into(), &value);
                }
                // "*": the framing page's origin is not known here; the message holds nothing it may not read.
                let _ = parent.post_message(&message, "*");
            }
        });
        let observer = Reflect::get(&window(), &"ResizeObserver".into())
            .ok()
            .and_then(|constructor| constructor.dyn_into::<Function>().ok())
            .and_then(|constructor| Reflect::construct(&constructor, &Array::of1(tell.as_ref())).ok());
        let observe = observer.as_ref().and_then(|observer| {
            Reflect::get(observer, &"observe".into()).ok()?.dyn_into::<Function>().ok().map(|f| (observer, f))
        });
        match observe {
            // The observer reports the element's size once as it starts observing, then on every change.
            Some((observer, observe)) => {
                let _ = observe.call1(observer, &element);
            }
            // A browser without it: the height once, as the page is first laid out.
            None => {
                let _ = tell.as_ref().unchecked_ref::<Function>().call0(&JsValue::NULL);
            }
        }
        tell.forget(); // for the page's lifetime, as the observer is
    });
}
