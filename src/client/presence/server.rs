//! Presence while the server renders the page: no one's lease is known until the tabs beat, so the page renders
//! no list, and there is no tab to beat for.

use super::Presence;

pub fn refresh(_presence: Presence) {}

pub fn joined(_presence: Presence, _ticket: String) {}

pub fn renewed(_presence: Presence, _ticket: String) {}

pub fn beat(_presence: Presence) {}
