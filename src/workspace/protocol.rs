//! The wire: requests decoded and replies encoded by `redis-protocol`, in
//! RESP2 or RESP3 as the client asked with HELLO. Requests are arrays of
//! bulk strings (the same in both versions); an inline command (a bare line,
//! as from telnet) is accepted too.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::BytesFrame as Frame3;

/// The longest request accepted (a bigger one closes the connection).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The longest inline request (a bare line, as from telnet), as in Redis.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

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

/// A reply as `redis-cli` prints it: `OK`, `(integer) 1344`, `"hello"`,
/// `(nil)`, `(error) ERR ...`.
impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "{s}"),
            Reply::Error(e) => write!(f, "(error) {e}"),
            Reply::Int(i) => write!(f, "(integer) {i}"),
            Reply::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Nil => write!(f, "(nil)"),
            Reply::Array(items) if items.is_empty() => write!(f, "(empty array)"),
            Reply::Array(items) => {
                let items: Vec<String> = items.iter().map(Reply::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Reply::Map(pairs) => {
                let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                write!(f, "{{{}}}", pairs.join(", "))
            }
        }
    }
}

/// How big a request may be. A client gets the small limits until it has
/// authenticated (as Redis does for unauthenticated clients since 6.2), so
/// that a stranger cannot make the server hold more than a few KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one request, its words and their headers together.
    pub request_bytes: usize,
    /// Words (the command and its arguments) of one request.
    pub words: usize,
}

impl Limits {
    /// Before AUTH: `HELLO 3 AUTH user password SETNAME name` fits.
    pub const BEFORE_AUTH: Limits = Limits {
        request_bytes: 16 * 1024,
        words: 16,
    };
    /// After AUTH (and on an open workspace).
    pub const AUTHENTICATED: Limits = Limits {
        request_bytes: MAX_REQUEST_BYTES,
        words: 1024 * 1024,
    };
}

/// The longest header line (`*N`, `$N`) there is: a sign, 20 digits, CRLF.
const MAX_HEADER: usize = 24;

/// Splits a byte stream into requests without recursion and without
/// re-reading what it has taken: a request is an array of bulk strings
/// (nothing nests, as in Redis: an array inside one is a protocol error) or
/// one inline line. The words of a request that is still arriving are kept
/// here, so a long pipeline costs one pass over its bytes.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Words still to come in the request being read (`None`: between
    /// requests).
    remaining: Option<usize>,
    words: Vec<Bytes>,
    /// Bytes of the request taken off the stream so far.
    taken: usize,
}

impl Decoder {
    /// Bytes of the unfinished request held here, not counting what is
    /// still in the caller's buffer.
    pub fn held(&self) -> usize {
        self.taken
    }

    /// Bytes still to come of the bulk string being read, when its header
    /// has arrived: the buffer can grow once to hold them instead of
    /// doubling (and copying) its way there.
    pub fn wants(&self, buf: &[u8]) -> usize {
        if self.remaining.is_none() {
            return 0;
        }
        match header(buf, b'$', Limits::AUTHENTICATED) {
            Ok(Some((len, used))) => {
                let whole = used + usize::try_from(len).unwrap_or(0) + 2;
                whole.saturating_sub(buf.len())
            }
            _ => 0,
        }
    }

    /// Takes the next whole request off the front of `buf`: `Ok(None)`
    /// until one has arrived. An error means the stream cannot be parsed
    /// any more (the connection must close); it says what was wrong.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: Limits,
    ) -> Result<Option<Vec<Bytes>>, String> {
        let Some(remaining) = self.remaining else {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                return decode_inline(buf, limits);
            }
            let Some((count, used)) = header(buf, b'*', limits)? else {
                return Ok(None);
            };
            if count > limits.words as i64 {
                return Err(format!(
                    "Protocol error: a request of {count} words is more than the {} allowed{}",
                    limits.words,
                    before_auth(limits)
                ));
            }
            let _ = buf.split_to(used);
            self.taken = used;
            // `*0` and `*-1` are no request at all; Redis ignores them.
            let count = usize::try_from(count).unwrap_or(0);
            self.words = Vec::with_capacity(count.min(1024));
            self.remaining = Some(count);
            return self.decode(buf, limits);
        };
        let mut remaining = remaining;
        while remaining > 0 {
            let Some((len, used)) = header(buf, b'$', limits)? else {
                self.remaining = Some(remaining);
                return Ok(None);
            };
            let len = usize::try_from(len)
                .map_err(|_| "Protocol error: a negative bulk length in a request".to_string())?;
            if self.taken + used + len + 2 > limits.request_bytes {
                return Err(too_large(limits));
            }
            if buf.len() < used + len + 2 {
                self.remaining = Some(remaining);
                return Ok(None);
            }
            if &buf[used + len..used + len + 2] != b"\r\n" {
                return Err("Protocol error: a bulk string does not end with CRLF".into());
            }
            let _ = buf.split_to(used);
            self.words.push(buf.split_to(len).freeze());
            let _ = buf.split_to(2);
            self.taken += used + len + 2;
            remaining -= 1;
        }
        self.remaining = None;
        self.taken = 0;
        Ok(Some(std::mem::take(&mut self.words)))
    }
}

/// `(value, bytes used)` of a `<kind><integer>\r\n` line at the front of
/// `buf`, `None` until it has arrived.
fn header(buf: &[u8], kind: u8, limits: Limits) -> Result<Option<(i64, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != kind {
        return Err(format!(
            "Protocol error: expected '{}', got '{}'",
            kind as char,
            (first as char).escape_default()
        ));
    }
    let window = &buf[..buf.len().min(MAX_HEADER)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= MAX_HEADER {
            return Err(format!(
                "Protocol error: invalid {} length",
                if kind == b'*' { "multibulk" } else { "bulk" }
            ));
        }
        return Ok(None);
    };
    let value = std::str::from_utf8(&buf[1..end])
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| {
            format!(
                "Protocol error: invalid {} length",
                if kind == b'*' { "multibulk" } else { "bulk" }
            )
        })?;
    if kind == b'$' && value > limits.request_bytes as i64 {
        return Err(too_large(limits));
    }
    Ok(Some((value, end + 2)))
}

fn too_large(limits: Limits) -> String {
    format!(
        "Protocol error: a request is larger than the {} allowed{}",
        human_bytes(limits.request_bytes),
        before_auth(limits)
    )
}

fn before_auth(limits: Limits) -> &'static str {
    if limits == Limits::BEFORE_AUTH {
        " before AUTH"
    } else {
        ""
    }
}

fn human_bytes(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
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

/// A bare line of words separated by spaces, at most `limits` long.
fn decode_inline(buf: &mut BytesMut, limits: Limits) -> Result<Option<Vec<Bytes>>, String> {
    let longest = limits.request_bytes.min(MAX_INLINE_BYTES);
    let window = &buf[..buf.len().min(longest)];
    let Some(end) = window.iter().position(|b| *b == b'\n') else {
        if buf.len() >= longest {
            return Err(format!(
                "Protocol error: an inline request is longer than the {} allowed{}",
                human_bytes(longest),
                before_auth(limits)
            ));
        }
        return Ok(None);
    };
    let line = buf.split_to(end + 1);
    let words: Vec<Bytes> = line
        .as_ref()
        .split(|b: &u8| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(Bytes::copy_from_slice)
        .collect();
    if words.len() > limits.words {
        return Err(format!(
            "Protocol error: a request of {} words is more than the {} allowed{}",
            words.len(),
            limits.words,
            before_auth(limits)
        ));
    }
    Ok(Some(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(buf: &mut BytesMut, limits: Limits) -> Result<Option<Vec<Bytes>>, String> {
        Decoder::default().decode(buf, limits)
    }

    #[test]
    fn a_request_arrives_in_pieces() {
        let mut decoder = Decoder::default();
        let whole = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let mut buf = BytesMut::new();
        let mut requests = Vec::new();
        for byte in whole {
            buf.extend_from_slice(&[*byte]);
            while let Some(words) = decoder
                .decode(&mut buf, Limits::BEFORE_AUTH)
                .expect("decodes")
            {
                requests.push(words);
            }
        }
        assert_eq!(
            requests,
            [
                vec![Bytes::from("GET"), Bytes::from("k")],
                vec![Bytes::from("PING")]
            ]
        );
        assert!(buf.is_empty());
        assert_eq!(decoder.held(), 0);
    }

    #[test]
    fn inline_commands_are_split_on_spaces() {
        let mut buf = BytesMut::from(&b"SET a  b\r\n"[..]);
        let words = decode(&mut buf, Limits::BEFORE_AUTH)
            .expect("decodes")
            .expect("whole");
        assert_eq!(words.len(), 3);
    }

    #[test]
    fn nested_arrays_are_refused_at_any_depth() {
        let mut buf = BytesMut::from(b"*1\r\n".repeat(100_000).as_slice());
        let refused = decode(&mut buf, Limits::AUTHENTICATED).expect_err("refused");
        assert_eq!(refused, "Protocol error: expected '$', got '*'");
    }

    #[test]
    fn requests_past_the_limits_are_refused_before_they_arrive() {
        let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$600000000\r\n"[..]);
        let refused = decode(&mut buf, Limits::BEFORE_AUTH).expect_err("refused");
        assert!(refused.contains("16 KiB allowed before AUTH"), "{refused}");
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$600000000\r\n"[..]);
        let refused = decode(&mut buf, Limits::AUTHENTICATED).expect_err("refused");
        assert!(refused.contains("64 MiB allowed"), "{refused}");
        let mut buf = BytesMut::from(&b"*17\r\n"[..]);
        assert!(decode(&mut buf, Limits::BEFORE_AUTH).is_err());
        let mut buf = BytesMut::from(&b"*99999999999999999999999\r\n"[..]);
        assert!(decode(&mut buf, Limits::AUTHENTICATED).is_err());
        let mut buf = BytesMut::from(vec![b'a'; 16 * 1024].as_slice());
        assert!(decode(&mut buf, Limits::BEFORE_AUTH).is_err());
        let mut buf = BytesMut::from(vec![b'a'; 64 * 1024].as_slice());
        assert!(decode(&mut buf, Limits::AUTHENTICATED).is_err());
        let mut buf = BytesMut::from(vec![b'a'; 64 * 1024 - 1].as_slice());
        assert_eq!(decode(&mut buf, Limits::AUTHENTICATED), Ok(None));
    }

    #[test]
    fn replies_print_as_redis_cli_prints_them() {
        assert_eq!(Reply::Int(1344).to_string(), "(integer) 1344");
        assert_eq!(Reply::bulk("hello").to_string(), "\"hello\"");
        assert_eq!(Reply::Nil.to_string(), "(nil)");
        assert_eq!(Reply::ok().to_string(), "OK");
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
