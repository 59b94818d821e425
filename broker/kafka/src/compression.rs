//! Decompressing a produced batch's records (gzip, snappy, lz4, zstd), never
//! past a limit: a few compressed bytes may claim gigabytes, so every codec
//! stops at the limit instead of allocating what the input claims.

use std::io::Read;

/// A batch's compression codec, from its attributes' lowest three bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec of `attributes`, or `None` for an unknown one.
    pub(crate) fn from_attributes(attributes: i16) -> Option<Codec> {
        Some(match attributes & 0x7 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }
}

/// Why compressed records could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecompressError {
    #[error("{codec:?} records decompress to more than {limit} bytes")]
    TooLarge { codec: Codec, limit: usize },
    #[error("{codec:?} records are corrupt: {reason}")]
    Corrupt { codec: Codec, reason: String },
}

/// Largest zstd window accepted (2^24 = 16 MiB): the decoder allocates the
/// window a frame declares, before producing any output. Producers use far
/// smaller windows at their usual levels.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The framing that Kafka's snappy records use: a magic, then blocks each
/// prefixed by its compressed length.
const SNAPPY_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// The magic and two big-endian version numbers.
const SNAPPY_HEADER: usize = 16;

/// `compressed` decompressed with `codec`, at most `limit` bytes of it.
pub(crate) fn decompress(codec: Codec, compressed: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    match codec {
        Codec::None => {
            if compressed.len() > limit {
                return Err(DecompressError::TooLarge { codec, limit });
            }
            Ok(compressed.to_vec())
        }
        Codec::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(compressed), limit),
        Codec::Snappy => snappy(compressed, limit),
        Codec::Lz4 => {
            let mut decoder = lz4::Decoder::new(compressed).map_err(|e| corrupt(e.to_string()))?;
            let out = read_bounded(codec, &mut decoder, limit)?;
            // A stream cut short reads as short output: the decoder says so
            // only when finished.
            decoder.finish().1.map_err(|e| corrupt(format!("the frame is cut short: {e}")))?;
            Ok(out)
        }
        Codec::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(compressed).map_err(|e| corrupt(e.to_string()))?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| corrupt(e.to_string()))?;
            read_bounded(codec, decoder, limit)
        }
    }
}

/// Everything `reader` yields, refused once it passes `limit`.
fn read_bounded(codec: Codec, reader: impl Read, limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt { codec, reason: e.to_string() })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Kafka's snappy framing, or a bare snappy block (which some producers
/// send): each block's decompressed length is read from its header and
/// checked against what is left of `limit` before anything is allocated.
fn snappy(compressed: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let codec = Codec::Snappy;
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    let mut out = Vec::new();
    let append = |block: &[u8], out: &mut Vec<u8>| {
        let len = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        let start = out.len();
        if len > limit - start {
            return Err(DecompressError::TooLarge { codec, limit });
        }
        out.resize(start + len, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    };
    if !compressed.starts_with(SNAPPY_MAGIC) {
        append(compressed, &mut out)?;
        return Ok(out);
    }
    let mut rest =
        compressed.get(SNAPPY_HEADER..).ok_or_else(|| corrupt("the header is cut short".into()))?;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt("a block length is cut short".into()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail.get(..len).ok_or_else(|| corrupt(format!("a block of {len} bytes is cut short")))?;
        append(block, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let (out, result) = e.finish();
        result.unwrap();
        out
    }

    fn snappy_framed(data: &[u8]) -> Vec<u8> {
        let mut out = SNAPPY_MAGIC.to_vec();
        out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in data.chunks(32 << 10) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    fn every_codec(data: &[u8]) -> Vec<(Codec, Vec<u8>)> {
        vec![
            (Codec::None, data.to_vec()),
            (Codec::Gzip, gzip(data)),
            (Codec::Snappy, snappy_framed(data)),
            (Codec::Snappy, snap::raw::Encoder::new().compress_vec(data).unwrap()),
            (Codec::Lz4, lz4(data)),
            (Codec::Zstd, zstd::encode_all(data, 3).unwrap()),
        ]
    }

    #[test]
    fn every_codec_round_trips_up_to_its_limit() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for (codec, compressed) in every_codec(&data) {
            assert_eq!(decompress(codec, &compressed, data.len()).unwrap(), data, "{codec:?}");
            assert_eq!(
                decompress(codec, &compressed, data.len() - 1),
                Err(DecompressError::TooLarge { codec, limit: data.len() - 1 }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        // 64 MiB of zeros compress to a few kilobytes in every codec.
        let zeros = vec![0u8; 64 << 20];
        for (codec, compressed) in every_codec(&zeros).into_iter().skip(1) {
            assert!(compressed.len() < 4 << 20, "{codec:?}: {}", compressed.len());
            let err = decompress(codec, &compressed, 1 << 20).unwrap_err();
            assert_eq!(err, DecompressError::TooLarge { codec, limit: 1 << 20 }, "{codec:?}");
        }
        // A bare snappy block whose header claims 4 GiB is refused from its
        // header alone.
        let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(decompress(Codec::Snappy, &claim, 1 << 20), Err(DecompressError::TooLarge { .. })));
    }

    #[test]
    fn corrupt_or_cut_input_is_an_error() {
        let data = b"some records, some records, some records".repeat(50);
        for (codec, compressed) in every_codec(&data).into_iter().skip(1) {
            let cut = &compressed[..compressed.len() / 2];
            assert!(
                matches!(decompress(codec, cut, 1 << 20), Err(DecompressError::Corrupt { .. })),
                "{codec:?} cut short"
            );
            let garbage = vec![0x5a; 64];
            assert!(decompress(codec, &garbage, 1 << 20).is_err(), "{codec:?} garbage");
        }
    }

    #[test]
    fn damaged_input_never_panics_nor_passes_the_limit() {
        let data = b"records, records, and more records; ".repeat(200);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (codec, compressed) in every_codec(&data).into_iter().skip(1) {
            for _ in 0..2000 {
                let mut bad = compressed.clone();
                bad.truncate(next() as usize % (bad.len() + 1));
                for _ in 0..1 + next() % 3 {
                    if !bad.is_empty() {
                        let at = next() as usize % bad.len();
                        bad[at] = next() as u8;
                    }
                }
                if let Ok(out) = decompress(codec, &bad, 4096) {
                    assert!(out.len() <= 4096, "{codec:?}: {}", out.len());
                }
            }
        }
    }

    #[test]
    fn a_zstd_frame_declaring_a_huge_window_is_refused() {
        let data = vec![7u8; 1 << 16];
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(27).unwrap();
        e.long_distance_matching(true).unwrap();
        e.write_all(&data).unwrap();
        let compressed = e.finish().unwrap();
        assert!(matches!(
            decompress(Codec::Zstd, &compressed, 1 << 20),
            Err(DecompressError::Corrupt { codec: Codec::Zstd, .. })
        ));
    }
}
