//! The protobuf codec of the generated `TelemetryIngest` server and client.
//!
//! Same bytes on the wire as tonic-prost's codec; the difference is only how prost meets
//! tonic's buffers. prost reading field by field through tonic's `DecodeBuf` (a window on a
//! `BytesMut`) pays a bounds-checked `advance` on the shared buffer for every float, and
//! writing through `EncodeBuf` pays a `BytesMut::put_slice` per field. A frame has about 60
//! fields, so that was a third of the ingest benchmark. Here a message is decoded from
//! one plain `&[u8]` (tonic hands over each message whole and contiguous), and encoded
//! into a reused `Vec` that is then copied into tonic's buffer in one go.

use std::marker::PhantomData;

use prost::bytes::{Buf, BufMut};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Encodes `T`, decodes `U` (the generated code picks them per method).
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SliceEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SliceEncoder {
            scratch: Vec::new(),
            _message: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder {
            _message: PhantomData,
        }
    }
}

pub struct SliceEncoder<T> {
    scratch: Vec<u8>,
    _message: PhantomData<T>,
}

impl<T: Message> Encoder for SliceEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.scratch.clear();
        item.encode(&mut self.scratch)
            .map_err(|error| Status::internal(format!("cannot encode a message: {error}")))?;
        dst.put_slice(&self.scratch);
        Ok(())
    }
}

pub struct SliceDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = src.remaining();
        let chunk = src.chunk();
        let decoded = if chunk.len() >= len {
            let decoded = U::decode(&chunk[..len]);
            src.advance(len);
            decoded
        } else {
            // Not contiguous (tonic's buffer always is today): the field-by-field way.
            U::decode(&mut *src)
        };
        // Whatever the outcome, the message is consumed.
        let left = src.remaining();
        src.advance(left);
        decoded
            .map(Some)
            .map_err(|error| Status::internal(format!("not a valid message: {error}")))
    }
}
