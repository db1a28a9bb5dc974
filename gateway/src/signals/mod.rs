//! Signal control (placeholder until the signals contract lands from SIG).
pub mod lookahead;
