//! Arbitrary bytes as client packets: framing, handshake responses and
//! COM_STMT_EXECUTE parameter blocks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = shardgate::frontend::codec::PacketCodec::new(1 << 20);
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(p)) = codec.decode(&mut buf) {
        let _ = mysql_common::packets::HandshakeResponse::deserialize((), &mut ParseBuf(&p.payload));
        let n = p.payload.first().copied().unwrap_or(0) as usize % 16;
        let mut types = Vec::new();
        let mut long = Default::default();
        let _ = shardgate::frontend::packets::parse_execute(&p.payload, n, &mut types, &mut long);
    }
});
