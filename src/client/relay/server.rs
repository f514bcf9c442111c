//! The relay while the server renders the page: there is no stream and no other tab, so the page shows
//! "Connecting…" until the tab hydrates and joins the browser's stream.
#![allow(dead_code)]

use std::rc::Rc;

use super::Tab;
use crate::shared::domain::{FeedName, Message};

pub fn start(_tab: Rc<dyn Tab>, _feed: FeedName, _locked: bool) {}

pub fn unlock(_pass: String) {}

pub fn share(_since: u64, _epoch: &str, _messages: &[Message]) {}
