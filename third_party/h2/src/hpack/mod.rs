mod decoder;
// Weir's patch: the encoder sends by the static table alone; the dynamic-table encoding is
// kept for h2's own tests (see encoder.rs).
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
mod encoder;
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod header;
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
pub(crate) mod huffman;
#[cfg_attr(not(test), allow(dead_code))]
mod table;

#[cfg(test)]
mod test;

pub use self::decoder::{Decoder, DecoderError, NeedMore};
pub use self::encoder::Encoder;
pub use self::header::{BytesStr, Header};
