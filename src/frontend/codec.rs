//! MySQL packet framing for tokio-util: 3-byte length + sequence id, with
//! payloads of 16 MiB - 1 continued in the next packet. Bounded by
//! `max_packet`, so a hostile length cannot make us allocate without limit.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// Largest single frame payload.
pub const MAX_FRAME: usize = 0xFF_FFFF;

/// A decoded logical packet: the sequence id of its last frame and the payload.
#[derive(Debug)]
pub struct Packet {
    /// Sequence id of the (last) frame; replies continue from it.
    pub seq: u8,
    /// The payload, frames joined.
    pub payload: BytesMut,
}

/// Decoder of client packets.
#[derive(Debug)]
pub struct PacketCodec {
    max_packet: usize,
    partial: Option<BytesMut>,
}

impl PacketCodec {
    /// A codec refusing logical packets larger than `max_packet` bytes.
    pub fn new(max_packet: usize) -> Self {
        PacketCodec {
            max_packet,
            partial: None,
        }
    }

    /// A payload over one frame is half joined: the frames in the buffer
    /// continue it, so none of them is a packet of its own.
    pub fn mid_packet(&self) -> bool {
        self.partial.is_some()
    }
}

/// The payload length a frame header at the start of `buf` announces.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let head = buf.get(..4)?;
    Some(head[0] as usize | (head[1] as usize) << 8 | (head[2] as usize) << 16)
}

/// The payload length of the packet at the start of `buf` when it lies
/// there whole in one frame: such a packet can be used in place, with no
/// payload split off the buffer (a result's rows, hundreds per read).
pub fn whole_frame(buf: &[u8]) -> Option<usize> {
    let len = frame_len(buf)?;
    (len < MAX_FRAME && buf.len() >= 4 + len).then_some(len)
}

impl Decoder for PacketCodec {
    type Item = Packet;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, std::io::Error> {
        loop {
            let Some(len) = frame_len(src) else {
                return Ok(None);
            };
            let seq = src[3];
            let so_far = self.partial.as_ref().map_or(0, |p| p.len());
            if so_far + len > self.max_packet {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "packet larger than max_allowed_packet ({} bytes)",
                        self.max_packet
                    ),
                ));
            }
            if src.len() < 4 + len {
                src.reserve(4 + len - src.len());
                return Ok(None);
            }
            src.advance(4);
            let chunk = src.split_to(len);
            if len == MAX_FRAME {
                self.partial
                    .get_or_insert_with(BytesMut::new)
                    .extend_from_slice(&chunk);
                continue;
            }
            let payload = match self.partial.take() {
                Some(mut p) => {
                    p.extend_from_slice(&chunk);
                    p
                }
                None => chunk,
            };
            return Ok(Some(Packet { seq, payload }));
        }
    }
}

/// Appends `payload` to `out` as one or more frames starting at `*seq`,
/// advancing `*seq` past them.
pub fn write_packet(out: &mut impl bytes::BufMut, seq: &mut u8, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        out.put_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, *seq]);
        out.put_slice(&rest[..n]);
        *seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_small_and_huge() {
        for size in [0usize, 1, 100, MAX_FRAME, MAX_FRAME + 5] {
            let payload = vec![7u8; size];
            let mut buf = BytesMut::new();
            let mut seq = 3;
            write_packet(&mut buf, &mut seq, &payload);
            let mut c = PacketCodec::new(64 << 20);
            let p = c.decode(&mut buf).unwrap().unwrap();
            assert_eq!(p.payload.len(), size);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn refuses_oversized_and_waits_for_partial() {
        let mut c = PacketCodec::new(10);
        let mut buf = BytesMut::from(&[20u8, 0, 0, 0][..]);
        assert!(c.decode(&mut buf).is_err());
        let mut c = PacketCodec::new(100);
        let mut buf = BytesMut::from(&[5u8, 0, 0, 0, 1, 2][..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
    }
}
