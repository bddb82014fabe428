//! QUIC transport (L4). Being written.
