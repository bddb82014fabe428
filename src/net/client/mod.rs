//! The client endpoint: a replica's [`ClientServer`] and the client's
//! [`ClientConnector`].
//!
//! Clients use their own port and ALPN (`pbft-client/2`), so client load and
//! client-facing bugs can't touch the replica mesh. A client talks to a
//! replica over a *session*: one bidirectional stream per connection on
//! which it writes request records and reads response records, any number
//! in flight (up to a cap) and answered in any order:
//!
//! ```text
//! record = len: u32 LE (of what follows) ‖ id: u64 LE ‖ kind: u8 ‖ payload
//! client → replica  kind 0: payload = one request frame
//! replica → client  kind 0: payload = the response frame
//!                   kind 1: busy (no request slot free at the replica)
//!                   kind 2: no response (the node dropped the request)
//! ```
//!
//! Why a session rather than a stream per request: a stream per request
//! costs the replica, for every request, a spawned task, two timers and
//! quinn's stream bookkeeping, and the client a stream set-up at each
//! replica; a session costs none of that per request, and records written
//! together leave in one write. The price is head-of-line blocking: a lost
//! packet delays the session's other requests, which a client that is
//! latency-sensitive across a lossy network can avoid by opening more than
//! one session.
//!
//! The client pins each replica's genesis key (it will only talk to the real
//! replica). The server accepts any ed25519 certificate: clients are not
//! members, and their transactions carry their own signatures, so the TLS key
//! only tells the node *which* client is asking ([`ClientRequest::client_key`]).
//!
//! Bounds: at most `CLIENT_CONNECTIONS` connections, `CLIENT_STREAMS`
//! sessions per connection (a QUIC stream limit) and `SESSION_IN_FLIGHT`
//! requests in flight per session (the client's connector waits for a free
//! slot; a client that sends more anyway loses its connection); at most
//! `queue_max` requests in flight in total (queued for the node or awaiting
//! its response), beyond which a request is answered "busy". A record over
//! the frame cap closes the connection (`FRAME_TOO_LARGE`). An answer costs
//! the replica nothing until the node produces it: the node's own timeouts
//! (`submit_timeout`) bound how long it holds a request.
//!
//! The parts: `record` (the record format above), `server` (the replica's
//! side: connections, sessions, handing requests to the node and writing
//! its answers), `capacity` (the server's bounds and the per-key and
//! per-source shares of its request slots) and `connector` (the client's
//! side: dialling, sessions, matching answers to their requests).

mod capacity;
mod connector;
pub(super) mod record;
mod server;

pub use capacity::ClientLimits;
pub use connector::ClientConnector;
pub use server::{ClientRequest, ClientServer, Responder, Screen};
