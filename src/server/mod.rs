//! Everything behind the HTTP contract. `startup` reads like a table of contents: settings, state, routes, serve.
//! `state` is a leaf every handler may import; `routes` assembles each handler module's routes; `net` is the HTTP
//! server that serves them (listener, connections, deadlines), which knows the router and the shortcut hook but no
//! handler. The use cases (`feed`: join, send, read a page; `roster`: heartbeat, leave, who is here;
//! `follow`: a tab's stream of notices) are plain
//! functions over domain types (`group::GroupId`, tickets, `pages::PageKey`, …) that every edge calls: the handlers
//! (`messages`, `heartbeat`), the shortcut and the server functions (`shared::api`) only extract, call and map the
//! error. `identity` verifies the tokens of the deployer's backend that a join may carry. The HTTP layers (`peer`,
//! `cookie`, `refusal`, `security`) sit in front of the handlers.

pub mod access;
pub mod admin;
pub mod api_keys;
pub mod backend;
pub mod broker;
pub mod budget;
pub mod cookie;
pub mod data_dir;
pub mod encoded;
pub mod events;
pub mod feed;
pub mod follow;
pub mod group;
pub mod heartbeat;
pub mod hub;
pub mod identity;
pub mod link;
pub mod messages;
pub mod migrate;
pub mod moderation;
pub mod net;
pub mod observe;
pub mod open_files;
pub mod ops;
pub mod pages;
pub mod peer;
pub mod presence;
pub mod pruning;
pub mod publish;
pub mod refusal;
pub mod replicas;
pub mod roster;
pub mod routes;
pub mod security;
pub mod settings;
pub mod startup;
pub mod state;
pub mod store;
pub mod throttle;
pub mod ticket;
