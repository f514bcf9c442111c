//! The mark beside a name that someone vouches for: the site's sign-in (`Source::Verified`) or the site's own
//! service (`Source::Service`). It is drawn from the message's `source` alone, never from the name, which is plain
//! text whatever it holds: a name typed as "✓ Ada" or "Ada (verified)" shows exactly that, with no mark. The mark
//! is a badge with its own border and background (style/main.css, `.mark`), which no run of characters in a name
//! can draw, and it says what it means to screen readers in words. The server renders it and the tab hydrates the
//! same markup, since both read the same `source`.

use leptos::prelude::*;

use crate::shared::domain::Source;

/// The badge for `source`; nothing for an anonymous one.
pub fn mark(source: &Source) -> Option<AnyView> {
    match source {
        Source::Anonymous => None,
        Source::Verified(_) => Some(
            view! {
                <span class="mark verified" title="Signed in through the site">
                    <span aria-hidden="true">"✓"</span>
                    <span class="sr-only">" (verified)"</span>
                </span>
            }
            .into_any(),
        ),
        Source::Service(_) => Some(
            view! {
                <span class="mark service" title="Sent by the site's own service">
                    <span aria-hidden="true">"app"</span>
                    <span class="sr-only">" (from the site's service)"</span>
                </span>
            }
            .into_any(),
        ),
    }
}
