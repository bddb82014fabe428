//! Encoding of everything that crosses a trust boundary (L1).
//!
//! Values are rkyv archives. Untrusted bytes are checked against a size cap
//! *before* anything else, then validated with bytecheck (`rkyv::from_bytes`),
//! never accessed unchecked. rkyv requires an aligned root, and buffers from
//! the network or disk are not guaranteed to be aligned, so a misaligned input
//! is copied into an [`AlignedVec`] first (rkyv#575).
//!
//! A frame on the wire is `[FORMAT_VERSION][archive bytes]`: rkyv has no schema
//! evolution (rkyv#164), so the leading byte lets a future format be told apart
//! instead of misread.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// Version byte that starts every frame.
pub const FORMAT_VERSION: u8 = 1;

/// Default cap on one frame. Large enough for a full batch plus a VIEW-CHANGE
/// carrying a window of prepared batches; anything bigger is refused unread.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The input is longer than the cap for its kind; it was not parsed.
    #[error("frame of {len} bytes exceeds the cap of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The frame is empty or starts with an unknown format version.
    #[error("unknown frame format version {0:?}")]
    BadVersion(Option<u8>),
    /// The bytes are not a valid archive of the expected type.
    #[error("malformed archive: {0}")]
    Malformed(String),
}

/// Serialises a value to rkyv bytes. Serialisation of the same value is
/// deterministic (fields in order, padding zeroed).
pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    rkyv::to_bytes::<rancor::Error>(value)
        .expect("serialising an in-memory value cannot fail")
        .into_vec()
}

/// Validates and deserialises untrusted bytes, refusing anything over `max`.
pub fn decode<T>(bytes: &[u8], max: usize) -> Result<T, CodecError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let align = std::mem::align_of::<u128>();
    let result = if (bytes.as_ptr() as usize).is_multiple_of(align) {
        rkyv::from_bytes::<T, rancor::Error>(bytes)
    } else {
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<T, rancor::Error>(&aligned)
    };
    result.map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Encodes a value as a versioned frame.
pub fn encode_frame<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let body = encode(value);
    let mut frame = Vec::with_capacity(body.len() + 1);
    frame.push(FORMAT_VERSION);
    frame.extend_from_slice(&body);
    frame
}

/// Decodes a versioned frame, checking the cap before the version and the body.
pub fn decode_frame<T>(frame: &[u8], max: usize) -> Result<T, CodecError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    if frame.len() > max {
        return Err(CodecError::TooLarge {
            len: frame.len(),
            max,
        });
    }
    match frame.first() {
        Some(&FORMAT_VERSION) => decode(&frame[1..], max),
        other => Err(CodecError::BadVersion(other.copied())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        a: u64,
        b: Vec<u8>,
    }

    #[test]
    fn round_trip_and_misaligned_input() {
        let s = Sample {
            a: 7,
            b: vec![1, 2, 3],
        };
        let frame = encode_frame(&s);
        assert_eq!(decode_frame::<Sample>(&frame, 1024).unwrap(), s);
        // Shift by one byte so the archive is misaligned in memory.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&frame[1..]);
        assert_eq!(decode::<Sample>(&shifted[1..], 1024).unwrap(), s);
    }

    #[test]
    fn refuses_oversized_unknown_and_garbage() {
        let frame = encode_frame(&Sample {
            a: 1,
            b: vec![0; 64],
        });
        assert!(matches!(
            decode_frame::<Sample>(&frame, 16),
            Err(CodecError::TooLarge { .. })
        ));
        let mut bad = frame.clone();
        bad[0] = 99;
        assert_eq!(
            decode_frame::<Sample>(&bad, 1024),
            Err(CodecError::BadVersion(Some(99)))
        );
        assert_eq!(
            decode_frame::<Sample>(&[], 1024),
            Err(CodecError::BadVersion(None))
        );
        let garbage = [FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_frame::<Sample>(&garbage, 1024),
            Err(CodecError::Malformed(_))
        ));
    }
}
