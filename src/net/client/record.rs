//! The session record format (see the module above): writing a record,
//! and reading one with its declared length bounded.

/// A record carrying a frame: a request, or the answer to one.
pub(super) const KIND_FRAME: u8 = 0;
/// An answer: no request slot was free at the replica.
pub(super) const KIND_BUSY: u8 = 1;
/// An answer: the node dropped the request without a response.
pub(super) const KIND_NO_RESPONSE: u8 = 2;
/// Bytes of a record after the length: id and kind.
pub(super) const RECORD_HEAD: usize = 8 + 1;
/// Records a writer puts into one write when several are ready.
pub(super) const COALESCE_BYTES_MAX: usize = 64 * 1024;

/// Appends the record `(id, kind, payload)` to `buf`.
pub(in crate::net) fn put_record(buf: &mut Vec<u8>, id: u64, kind: u8, payload: &[u8]) {
    buf.extend_from_slice(&((RECORD_HEAD + payload.len()) as u32).to_le_bytes());
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

/// Why reading the next record failed.
pub(super) enum ReadFailure {
    /// The stream ended cleanly between records.
    Ended,
    /// The declared length is outside `RECORD_HEAD..=RECORD_HEAD + max`.
    BadLength(usize),
    Read(quinn::ReadError),
}

/// Reads one record: `(id, kind, payload)`.
pub(super) async fn read_record(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(u64, u8, Vec<u8>), ReadFailure> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(ReadFailure::Ended),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadFailure::Read(e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(RECORD_HEAD..=RECORD_HEAD + max).contains(&len) {
        return Err(ReadFailure::BadLength(len));
    }
    let mut body = vec![0u8; len];
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(ReadFailure::Ended),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadFailure::Read(e)),
    }
    let id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
    let kind = body[8];
    body.drain(..RECORD_HEAD);
    Ok((id, kind, body))
}
