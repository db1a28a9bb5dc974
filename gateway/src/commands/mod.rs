//! Downlink commands from the platform: the versioned, Ed25519-signed command envelope
//! (`envelope`), its pure verifier with expiry, clock skew and replay protection (`verify`),
//! and the shell that turns a received publish into a result message, an event and a command
//! for the rest of the gateway (`downlink`), what an accepted command asks for (`action`), and
//! the durable journal of nonces, commands not yet carried out and running plan overrides
//! (`journal`).
//!
//! # The envelope (version 1)
//!
//! A command is published by the platform on `citygate/v1/<gw>/cmd/<name>` as one JSON object:
//!
//! ```json
//! {"v":1,"gateway":"gw-1","name":"plan_override","args":{"plan":3},
//!  "issued_at":1700000000,"expires_at":1700000060,
//!  "nonce":"3f9c2a1e-6b7d-4c38-9a0e-5d1b2c3d4e5f","key_id":"platform-1","sig":"base64..."}
//! ```
//!
//! | field | rule |
//! |---|---|
//! | `v` | `1` |
//! | `gateway` | the id of the gateway that must obey; any other gateway refuses it |
//! | `name` | 1–64 of `a-z 0-9 _`; equal to the topic's last segment |
//! | `args` | a JSON object (may be absent: `{}`) |
//! | `issued_at`, `expires_at` | seconds since the epoch (integers); `issued_at < expires_at` |
//! | `nonce` | 16–64 of `A-Z a-z 0-9 _ -`, unique per command (a UUID or 128 random bits) |
//! | `key_id` | 1–64 of `A-Z a-z 0-9 _ . -`; names a key of `[commands] keys` |
//! | `sig` | Ed25519 signature (64 bytes, standard base64 with padding) of the signed bytes |
//!
//! Unknown fields are refused. At most [`MAX_COMMAND_BYTES`] bytes.
//!
//! # The signed bytes
//!
//! The signature covers this UTF-8 text, lines joined by `\n`, no trailing newline:
//!
//! ```text
//! citygate-command-v1
//! <gateway>
//! <name>
//! <issued_at in decimal>
//! <expires_at in decimal>
//! <nonce>
//! <key_id>
//! <args as canonical JSON>
//! ```
//!
//! None of the line fields can hold a newline (their character sets exclude it). Canonical
//! JSON: no whitespace, object keys sorted by their UTF-8 bytes, strings escaped as
//! `serde_json` writes them (`"`, `\`, and control characters; everything else literal),
//! integers in decimal, other numbers in their shortest round-trip form. Platforms should use
//! strings and integers in `args`. [`envelope::signed_bytes`] is the reference, and a test pins
//! a vector.
//!
//! # Checks, in order
//!
//! size, JSON shape, version, presence of `sig`, field syntax, known `key_id`, signature,
//! gateway, lifetime (`expires_at - issued_at <= max_lifetime_s`), not yet valid
//! (`issued_at > now + max_clock_skew_s`), expired (`now > expires_at + max_clock_skew_s`),
//! replay (nonce seen before), then in the downlink the topic and room to queue it; a retained
//! message is refused before all of these. Only a command that passed every check uses up its
//! nonce. A nonce is remembered (durably, across restarts) until `expires_at + max_clock_skew_s`, after
//! which the command is refused as expired anyway; at most `replay_capacity` nonces are kept,
//! and when that many unexpired commands are remembered, new ones are refused (fail closed).

pub mod action;
pub mod downlink;
pub mod envelope;
pub mod journal;
pub mod verify;

pub use action::{Action, ActionError};
pub use downlink::{Downlink, Outcome};
pub use envelope::{signed_bytes, Command, ENVELOPE_VERSION, MAX_COMMAND_BYTES};
pub use journal::Journal;
pub use verify::{Reason, Rejection, Verifier, VerifierError};
