//! Names on the wire that the page, the server, the tests and the bench must spell the same way.

/// The session group's Server-Sent Events stream.
pub const EVENTS_PATH: &str = "/events";
/// The SSE event that announces the newest message id.
pub const NEW_MESSAGE: &str = "NewMessage";
/// Join with a name (a server function).
pub const JOIN_PATH: &str = "/api/join";
/// Send a message (a server function).
pub const SEND_PATH: &str = "/api/send";
/// The limits the page checks before sending (a server function).
pub const LIMITS_PATH: &str = "/api/limits";
/// Read a page of the log.
pub const MESSAGES_PATH: &str = "/api/messages";
/// The response header of `GET /api/messages` that names the log's epoch: ids restart from 1 in a new epoch (the
/// log was lost and made anew), so a tab holding ids of another epoch reloads its log.
pub const EPOCH_HEADER: &str = "broadcasting-epoch";
/// The SSE event that says who is here in the group changed: the tab asks `PRESENCE_PATH` again.
pub const PRESENCE_CHANGED: &str = "PresenceChanged";
/// Who is here (`GET`), and a joined tab's heartbeat (`POST`).
pub const PRESENCE_PATH: &str = "/api/presence";
/// A tab leaving at once (`POST`, sent with `navigator.sendBeacon` as the page goes away).
pub const PRESENCE_LEAVE_PATH: &str = "/api/presence/leave";
