//! HAProxy's PROXY protocol on the MySQL listener (vtgate's
//! `--proxy_protocol`).
//!
//! Behind a TCP load balancer every client seems to come from the
//! balancer. A balancer that speaks the PROXY protocol writes, before the
//! client's bytes, a header naming the client's address: a line of text
//! (version 1, `PROXY TCP4 src dst sport dport\r\n`) or a binary block
//! (version 2). With the flag, shardgate reads that header before its
//! greeting and takes the client's address from it (the access-denied
//! message, the query log). MySQL's server speaks first, so a client
//! without a header sends nothing: after a short wait such a connection
//! is served with its socket's address, as vtgate's listener does after
//! its header timeout. Bytes that are not a header close the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How long a connection may stay silent before it is served without a
/// header.
pub const HEADER_WAIT: Duration = Duration::from_secs(2);

/// Version 2's signature, the first 12 bytes of its header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Version 1's longest line, `\r\n` included (the protocol's bound).
const V1_MAX: usize = 107;

/// What the bytes read so far make of a header.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A whole header of `len` bytes; the client's address, or None where
    /// the header names none (v1 `UNKNOWN`, v2 `LOCAL` or a family that is
    /// not TCP over IP): the socket's address stands.
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
    /// A header's beginning: read on.
    Partial,
    /// Not a header, or a broken one.
    Bad(&'static str),
}

/// Reads a PROXY header from a new connection: Ok(Some(address)) of the
/// client it names, Ok(None) where there is none to take (no header
/// within [`HEADER_WAIT`], or one that names no address), Err for bytes
/// that are not a header or a connection that ends inside one.
pub(crate) async fn read_header<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
) -> std::io::Result<Option<SocketAddr>> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut buf = Vec::with_capacity(64);
    loop {
        match parse(&buf) {
            Parsed::Header { len, client } if len == buf.len() => return Ok(client),
            // The client speaks only after the greeting.
            Parsed::Header { .. } => return Err(bad("bytes after the PROXY header")),
            Parsed::Bad(why) => return Err(bad(why)),
            Parsed::Partial => {}
        }
        let read = tokio::time::timeout(wait, stream.read_buf(&mut buf)).await;
        match read {
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(bad("PROXY header cut short")),
            Ok(Ok(0)) => {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

fn parse(buf: &[u8]) -> Parsed {
    let v1 = b"PROXY ";
    let head = buf.len().min(V2_SIGNATURE.len());
    if buf[..head] == V2_SIGNATURE[..head] {
        return if head < V2_SIGNATURE.len() {
            Parsed::Partial
        } else {
            parse_v2(buf)
        };
    }
    let head = buf.len().min(v1.len());
    if buf[..head] != v1[..head] {
        return Parsed::Bad("not a PROXY protocol header");
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Bad("PROXY header line too long")
        } else {
            Parsed::Partial
        };
    };
    let len = end + 2;
    if len > V1_MAX {
        return Parsed::Bad("PROXY header line too long");
    }
    let Ok(line) = std::str::from_utf8(&buf[v1.len()..end]) else {
        return Parsed::Bad("PROXY header is not text");
    };
    let words: Vec<&str> = line.split(' ').collect();
    match words.as_slice() {
        ["UNKNOWN", ..] => Parsed::Header { len, client: None },
        [proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: Option<IpAddr> = match *proto {
                "TCP4" => src.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
                _ => src.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            };
            match (ip, sport.parse::<u16>()) {
                (Some(ip), Ok(port)) => Parsed::Header {
                    len,
                    client: Some(SocketAddr::new(ip, port)),
                },
                _ => Parsed::Bad("PROXY header with a bad address"),
            }
        }
        _ => Parsed::Bad("PROXY header of an unknown form"),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let Some(fixed) = buf.get(12..16) else {
        return Parsed::Partial;
    };
    let (ver_cmd, family) = (fixed[0], fixed[1]);
    if ver_cmd >> 4 != 2 {
        return Parsed::Bad("PROXY header of an unknown version");
    }
    let len = 16 + u16::from_be_bytes([fixed[2], fixed[3]]) as usize;
    let Some(body) = buf.get(16..len) else {
        return Parsed::Partial;
    };
    let client = match (ver_cmd & 0x0F, family) {
        // LOCAL: the balancer's own connection (a health check).
        (0, _) => None,
        (1, 0x11) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        (1, 0x21) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        (1, 0x11 | 0x21) => return Parsed::Bad("PROXY header with a short address block"),
        // UNSPEC, Unix sockets, UDP: no TCP client address to take.
        (1, _) => None,
        _ => return Parsed::Bad("PROXY header with an unknown command"),
    };
    Parsed::Header { len, client }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn version_one_lines() {
        let line = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 15306\r\n";
        assert_eq!(
            parse(line),
            Parsed::Header {
                len: line.len(),
                client: addr("203.0.113.7:5555")
            }
        );
        let line = b"PROXY TCP6 2001:db8::7 ::1 6000 15306\r\n";
        assert_eq!(
            parse(line),
            Parsed::Header {
                len: line.len(),
                client: addr("[2001:db8::7]:6000")
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                client: None
            }
        );
        for prefix in 0..line.len() {
            assert_eq!(parse(&line[..prefix]), Parsed::Partial, "{prefix}");
        }
        assert!(matches!(parse(b"GET / HTTP/1.0\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(b"PROXY TCP4 x y 1 2\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(b"PROXY TCP4 1.2.3.4\r\n"), Parsed::Bad(_)));
        assert!(matches!(parse(&[b'P'; 200]), Parsed::Bad(_)));
        let long = [&b"PROXY "[..], &[b'x'; 120]].concat();
        assert!(matches!(parse(&long), Parsed::Bad(_)));
    }

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x20 | cmd, family]);
        h.extend((body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn version_two_blocks() {
        // TCP over IPv4 with a TLV after the addresses (skipped).
        let mut body = vec![203, 0, 113, 7, 127, 0, 0, 1, 0x15, 0xb3, 0x3b, 0xca];
        body.extend([0x04, 0x00, 0x01, 0x00]);
        let h = v2(1, 0x11, &body);
        assert_eq!(
            parse(&h),
            Parsed::Header {
                len: h.len(),
                client: addr("203.0.113.7:5555")
            }
        );
        for prefix in 0..h.len() {
            assert_eq!(parse(&h[..prefix]), Parsed::Partial, "{prefix}");
        }
        let mut body6 = vec![0x20, 0x01, 0x0d, 0xb8];
        body6.extend([0; 11]);
        body6.push(7);
        body6.extend([0; 15]);
        body6.push(1);
        body6.extend([0x17, 0x70, 0x3b, 0xca]);
        let h = v2(1, 0x21, &body6);
        assert_eq!(
            parse(&h),
            Parsed::Header {
                len: h.len(),
                client: addr("[2001:db8::7]:6000")
            }
        );
        let local = v2(0, 0x00, &[]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                len: 16,
                client: None
            }
        );
        assert!(matches!(parse(&v2(1, 0x11, &[1, 2, 3])), Parsed::Bad(_)));
        assert!(matches!(parse(&v2(7, 0x11, &body)), Parsed::Bad(_)));
        let mut v3 = v2(1, 0x11, &body);
        v3[12] = 0x31;
        assert!(matches!(parse(&v3), Parsed::Bad(_)));
    }

    #[tokio::test]
    async fn a_silent_connection_has_no_header_and_extra_bytes_are_refused() {
        let (mut client, mut server) = tokio::io::duplex(256);
        let wait = Duration::from_millis(50);
        assert_eq!(read_header(&mut server, wait).await.unwrap(), None);
        use tokio::io::AsyncWriteExt;
        client
            .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 15306\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_header(&mut server, wait).await.unwrap(),
            addr("203.0.113.7:5555")
        );
        client.write_all(b"PROXY UNKNOWN\r\nhello").await.unwrap();
        assert!(read_header(&mut server, wait).await.is_err());
    }
}
