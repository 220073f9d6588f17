//! HdrHistograms under the fleet [`CONTRACT`], carried as V2 + DEFLATE, base64.
use base64::{engine::general_purpose::STANDARD, Engine};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::schema::{Contract, Hist, CONTRACT, ENCODING};

#[derive(Debug, thiserror::Error)]
pub enum HistError {
    #[error("histogram `{0}`: encoding `{1}` is not {ENCODING}")]
    Encoding(String, String),
    #[error("histogram `{0}`: {1}")]
    Decode(String, String),
    #[error("histogram `{name}` is built with (low {}, high {}, sigfig {}), not the report's contract (low {}, high {}, sigfig {})",
        .got.low, .got.high, .got.sigfig, .want.low, .want.high, .want.sigfig)]
    Contract { name: String, got: Contract, want: Contract },
    #[error("histogram `{name}`: header says {said} samples, data holds {holds}")]
    Count { name: String, said: u64, holds: u64 },
    #[error("histogram `{0}`: {1}")]
    Limit(String, String),
}

/// Samples one histogram may hold: any sum of a few such stays serialisable (V2 writes
/// counts as i64) and far above anything one host records.
pub const MAX_SAMPLES: u64 = 1 << 56;
/// Bytes a histogram may inflate to: the contract's buckets at 9 bytes each are ~200 KB.
const MAX_INFLATED: u64 = 4 << 20;
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9304;
const V2_COOKIE: u32 = 0x1c84_9303;
/// Cookie, payload length, normalizing offset, sigfig, low, high, conversion ratio.
const V2_HEADER: usize = 40;

/// The V2 header's payload length, checked against what the data really inflates to before
/// the deserializer allocates it (a 6 KB file may claim 2 GB).
fn check_claims(name: &str, bytes: &[u8]) -> Result<(), HistError> {
    use std::io::Read;
    let limit = |p: String| Err(HistError::Limit(name.into(), p));
    let be32 = |b: &[u8], at: usize| b.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap()));
    if be32(bytes, 0) != Some(V2_DEFLATE_COOKIE) {
        // Anything else the deserializer refuses without allocating by a claim.
        return Ok(());
    }
    let Some(clen) = be32(bytes, 4) else { return limit("truncated header".into()) };
    let Some(compressed) = bytes.get(8..8 + clen as usize) else {
        return limit(format!("header says {clen} compressed bytes, data holds {}", bytes.len().saturating_sub(8)));
    };
    let mut inflated = Vec::new();
    let read = flate2::read::ZlibDecoder::new(compressed).take(MAX_INFLATED + 1).read_to_end(&mut inflated);
    if read.is_err() {
        // The deserializer names the problem.
        return Ok(());
    }
    if inflated.len() as u64 > MAX_INFLATED {
        return limit(format!("inflates to over {MAX_INFLATED} bytes: refused"));
    }
    if be32(&inflated, 0) == Some(V2_COOKIE) {
        let payload = be32(&inflated, 4).unwrap_or(u32::MAX) as usize;
        if payload > inflated.len().saturating_sub(V2_HEADER) {
            return limit(format!("header claims a {payload}-byte payload, data holds {}", inflated.len().saturating_sub(V2_HEADER)));
        }
    }
    Ok(())
}

pub fn new() -> Histogram<u64> {
    Histogram::new_with_bounds(CONTRACT.low, CONTRACT.high, CONTRACT.sigfig).expect("the contract's bounds are valid")
}

pub fn contract_of(h: &Histogram<u64>) -> Contract {
    Contract { low: h.low(), high: h.high(), sigfig: h.sigfig() }
}

/// Panics only past [`MAX_SAMPLES`] per bucket, which a histogram of one run cannot reach;
/// a merge checks its sums with [`encode_checked`].
pub fn encode(h: &Histogram<u64>, unit: &str) -> Hist {
    encode_checked(h, unit).expect("serializing into a Vec fails only on counts over i64")
}

pub fn encode_checked(h: &Histogram<u64>, unit: &str) -> Result<Hist, String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut buf).map_err(|e| format!("{e:?}"))?;
    Ok(Hist { unit: unit.into(), count: h.len(), encoding: ENCODING.into(), data: STANDARD.encode(buf) })
}

/// Decodes `h` and checks it against `contract` and its own `count`.
pub fn decode(name: &str, h: &Hist, contract: Contract) -> Result<Histogram<u64>, HistError> {
    if h.encoding != ENCODING {
        return Err(HistError::Encoding(name.into(), h.encoding.clone()));
    }
    if h.count > MAX_SAMPLES {
        return Err(HistError::Limit(name.into(), format!("{} samples: over the {MAX_SAMPLES} one histogram may hold", h.count)));
    }
    let bytes = STANDARD.decode(&h.data).map_err(|e| HistError::Decode(name.into(), format!("base64: {e}")))?;
    check_claims(name, &bytes)?;
    let hist: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| HistError::Decode(name.into(), format!("{e:?}")))?;
    let got = contract_of(&hist);
    if got != contract {
        return Err(HistError::Contract { name: name.into(), got, want: contract });
    }
    if hist.len() != h.count {
        return Err(HistError::Count { name: name.into(), said: h.count, holds: hist.len() });
    }
    Ok(hist)
}

/// p50, p90, p99, max: always read off one histogram (a merged one for a fleet), never averaged.
pub fn summary(h: &Histogram<u64>) -> [(&'static str, u64); 4] {
    [("p50", h.value_at_quantile(0.5)), ("p90", h.value_at_quantile(0.9)), ("p99", h.value_at_quantile(0.99)), ("max", h.max())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_contract_and_values() {
        let mut h = new();
        for v in [1, 2, 2, 3, 1_000_000, 59_000_000_000] {
            h.record(v).unwrap();
        }
        let e = encode(&h, "ns");
        let back = decode("x", &e, CONTRACT).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), 6);
        let other = Contract { sigfig: 2, ..CONTRACT };
        assert!(matches!(decode("x", &e, other), Err(HistError::Contract { .. })));
    }

    #[test]
    fn merged_percentiles_come_from_the_merged_histogram() {
        let (mut a, mut b) = (new(), new());
        (1..=90).for_each(|v| a.record(v).unwrap());
        (1000..1010).for_each(|v| b.record(v).unwrap());
        a.add(&b).unwrap();
        // 100 samples: the 50th is 50 and the 99th 1008 (exact below 2048 at 3 figures);
        // averaging the two inputs' p99 (89 and 1009) would give 549.
        assert_eq!(a.value_at_quantile(0.5), 50);
        assert_eq!(a.value_at_quantile(0.99), 1008);
        assert_eq!(a.max(), 1009);
    }
}
