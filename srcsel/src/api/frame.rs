//! One message per frame: a 4-byte big-endian length, then that much JSON.
//! The length is checked against the reader's limit before anything is
//! read, so an oversized frame costs the reader nothing.
use std::io::{self, Read, Write};

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection before a frame began.
    #[error("the connection was closed")]
    Closed,
    #[error("a message of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("API messages serialize");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn check_len(head: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

fn closed_if_eof(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Closed
    } else {
        FrameError::Io(e)
    }
}

pub fn write<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg))
}

pub fn read<T: DeserializeOwned>(r: &mut impl Read, max: usize) -> Result<T, FrameError> {
    let mut head = [0; 4];
    r.read_exact(&mut head).map_err(closed_if_eof)?;
    let mut body = vec![0; check_len(head, max)?];
    r.read_exact(&mut body)?;
    Ok(serde_json::from_slice(&body)?)
}

pub async fn write_async<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> io::Result<()> {
    w.write_all(&encode(msg)).await
}

/// Reads one frame's bytes (the caller decodes them, to tell a message of
/// another version from a malformed one).
pub async fn read_async(
    r: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut head = [0; 4];
    r.read_exact(&mut head).await.map_err(closed_if_eof)?;
    let mut body = vec![0; check_len(head, max)?];
    r.read_exact(&mut body).await?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_limits_hold_before_reading() {
        let mut buf = Vec::new();
        write(&mut buf, &vec!["a", "b"]).unwrap();
        let back: Vec<String> = read(&mut buf.as_slice(), 64).unwrap();
        assert_eq!(back, ["a", "b"]);
        let huge = (100u32 << 20).to_be_bytes();
        assert!(matches!(
            read::<()>(&mut huge.as_slice(), 4096),
            Err(FrameError::TooLarge { len, max: 4096 }) if len == 100 << 20
        ));
        assert!(matches!(
            read::<()>(&mut [].as_slice(), 4096),
            Err(FrameError::Closed)
        ));
    }
}
