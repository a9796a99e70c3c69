//! The wire: requests decoded and replies encoded by `redis-protocol`, in
//! RESP2 or RESP3 as the client asked with HELLO. Requests are arrays of
//! bulk strings (the same in both versions); an inline command (a bare line,
//! as from telnet) is accepted too.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::BytesFrame as Frame3;

/// The longest request accepted (a bigger one closes the connection).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// A reply before it is encoded for the connection's protocol version.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    /// `-CODE message`: the code is the first word.
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Nil,
    Array(Vec<Reply>),
    /// A map in RESP3, a flat array of pairs in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    pub fn err(message: impl Into<String>) -> Reply {
        Reply::Error(message.into())
    }

    pub fn bulk(text: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(text.into()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    fn to_resp2(&self) -> Frame2 {
        match self {
            Reply::Simple(s) => Frame2::SimpleString(Bytes::from(s.clone())),
            Reply::Error(e) => Frame2::Error(e.as_str().into()),
            Reply::Int(i) => Frame2::Integer(*i),
            Reply::Bulk(b) => Frame2::BulkString(b.clone()),
            Reply::Nil => Frame2::Null,
            Reply::Array(items) => Frame2::Array(items.iter().map(Reply::to_resp2).collect()),
            Reply::Map(pairs) => Frame2::Array(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [k.to_resp2(), v.to_resp2()])
                    .collect(),
            ),
        }
    }

    fn to_resp3(&self) -> Frame3 {
        match self {
            Reply::Simple(s) => Frame3::SimpleString {
                data: Bytes::from(s.clone()),
                attributes: None,
            },
            Reply::Error(e) => Frame3::SimpleError {
                data: e.as_str().into(),
                attributes: None,
            },
            Reply::Int(i) => Frame3::Number {
                data: *i,
                attributes: None,
            },
            Reply::Bulk(b) => Frame3::BlobString {
                data: b.clone(),
                attributes: None,
            },
            Reply::Nil => Frame3::Null,
            Reply::Array(items) => Frame3::Array {
                data: items.iter().map(Reply::to_resp3).collect(),
                attributes: None,
            },
            Reply::Map(pairs) => Frame3::Map {
                data: pairs
                    .iter()
                    .map(|(k, v)| (k.to_resp3(), v.to_resp3()))
                    .collect(),
                attributes: None,
            },
        }
    }

    /// Appends the reply to `out` in RESP3 when `resp3`, else RESP2.
    pub fn encode(&self, resp3: bool, out: &mut BytesMut) -> Result<(), String> {
        let encoded = if resp3 {
            redis_protocol::resp3::encode::complete::extend_encode(out, &self.to_resp3(), false)
        } else {
            redis_protocol::resp2::encode::extend_encode(out, &self.to_resp2(), false)
        };
        encoded.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Takes one request off the front of `buf`: `Ok(None)` until a whole one
/// has arrived. An error means the stream cannot be parsed any more.
pub fn decode_request(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != b'*' {
        return Ok(decode_inline(buf));
    }
    let decoded = redis_protocol::resp2::decode::decode_bytes_mut(buf)
        .map_err(|e| format!("Protocol error: {e}"))?;
    let Some((frame, _, _)) = decoded else {
        if buf.len() > MAX_REQUEST_BYTES {
            return Err("Protocol error: request too large".into());
        }
        return Ok(None);
    };
    match frame {
        Frame2::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Frame2::BulkString(b) | Frame2::SimpleString(b) => Ok(b),
                Frame2::Integer(i) => Ok(Bytes::from(i.to_string())),
                _ => Err("Protocol error: expected an array of bulk strings".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err("Protocol error: expected an array of bulk strings".into()),
    }
}

/// Sends one request over `stream` (RESP2) and reads its reply: what the
/// orchestrator's probe speaks to a workspace. `Err` for an error reply or
/// a broken connection, with the server's words.
pub async fn call<S>(stream: &mut S, words: &[&[u8]]) -> Result<Reply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = Frame2::Array(
        words
            .iter()
            .map(|w| Frame2::BulkString(Bytes::copy_from_slice(w)))
            .collect(),
    );
    let mut out = BytesMut::new();
    redis_protocol::resp2::encode::extend_encode(&mut out, &request, false)
        .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    loop {
        if let Some((frame, _, _)) = redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
            .map_err(|e| format!("Protocol error: {e}"))?
        {
            return match frame {
                Frame2::Error(e) => Err(e.to_string()),
                Frame2::SimpleString(s) => Ok(Reply::Simple(String::from_utf8_lossy(&s).into())),
                Frame2::BulkString(b) => Ok(Reply::Bulk(b)),
                Frame2::Integer(i) => Ok(Reply::Int(i)),
                Frame2::Null => Ok(Reply::Nil),
                Frame2::Array(_) => Ok(Reply::Array(Vec::new())),
            };
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the connection closed before a reply".into());
        }
    }
}

/// A bare line of words separated by spaces.
fn decode_inline(buf: &mut BytesMut) -> Option<Vec<Bytes>> {
    let end = buf.iter().position(|b| *b == b'\n')?;
    let line = buf.split_to(end + 1);
    let text = String::from_utf8_lossy(&line);
    Some(
        text.split_ascii_whitespace()
            .map(|w| Bytes::from(w.to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_arrives_in_pieces() {
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1"[..]);
        assert_eq!(decode_request(&mut buf), Ok(None));
        buf.extend_from_slice(b"\r\nk\r\n*1\r\n$4\r\nPING\r\n");
        let first = decode_request(&mut buf).expect("decodes").expect("whole");
        assert_eq!(first, vec![Bytes::from("GET"), Bytes::from("k")]);
        let second = decode_request(&mut buf).expect("decodes").expect("whole");
        assert_eq!(second, vec![Bytes::from("PING")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn inline_commands_are_split_on_spaces() {
        let mut buf = BytesMut::from(&b"SET a  b\r\n"[..]);
        let words = decode_request(&mut buf).expect("decodes").expect("whole");
        assert_eq!(words.len(), 3);
    }

    #[test]
    fn maps_are_flat_arrays_in_resp2() {
        let reply = Reply::Map(vec![(Reply::bulk("proto"), Reply::Int(2))]);
        let mut out = BytesMut::new();
        reply.encode(false, &mut out).expect("encodes");
        assert_eq!(&out[..], b"*2\r\n$5\r\nproto\r\n:2\r\n");
        let mut out = BytesMut::new();
        reply.encode(true, &mut out).expect("encodes");
        assert_eq!(&out[..], b"%1\r\n$5\r\nproto\r\n:2\r\n");
    }
}
