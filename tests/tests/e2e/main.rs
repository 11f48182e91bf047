//! End-to-end tests against real components: one Synapse per test process (shared, unique
//! users per test), SoftHSM2 tokens, the real `tchap-secure` binary, real TLS peers.

mod at_rest;
mod attachments;
mod bad_input;
mod crash;
mod crash_points;
mod hostile;
mod hostile_server;
mod identity;
mod log_redaction;
mod messaging;
mod notification;
mod push;
mod relations;
mod retention;
mod rotation;
mod scanner_testbed;
mod session;
mod support;
mod timeline;
mod transport;
mod trust;
mod vault;
