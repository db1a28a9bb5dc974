//! The versioned uplink topic scheme (work in progress).
