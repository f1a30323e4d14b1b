//! A base-2 exponential histogram of positive values (durations), as OpenTelemetry defines it:
//! bucket `i` at scale `s` holds the values in `(base^i, base^(i+1)]` with `base = 2^(2^-s)`.
//! It starts at the finest scale and halves its resolution whenever the values seen would need
//! more than `max_size` buckets, so its size is bounded whatever it is fed.

use opentelemetry_proto::tonic::metrics::v1::{ExponentialHistogramDataPoint, exponential_histogram_data_point};

/// The finest scale used (the specification's highest).
const MAX_SCALE: i32 = 20;
/// The coarsest (the specification's lowest): every double fits in a few buckets there.
const MIN_SCALE: i32 = -10;

#[derive(Debug, Clone)]
pub struct ExponentialHistogram {
    max_size: usize,
    scale: i32,
    /// The index of `counts[0]` (meaningful once a positive value was recorded).
    offset: i32,
    counts: Vec<u64>,
    zero_count: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// The bucket index of `v` (> 0) at `scale`, exact at powers of two.
fn index(v: f64, scale: i32) -> i32 {
    let (mantissa, exponent) = frexp(v);
    let power_of_two = mantissa == 0.5;
    if scale <= 0 {
        // v = m * 2^e with m in [0.5, 1): v lies in (2^(e-1), 2^e], the scale-0 bucket e - 1,
        // except an exact power of two, the upper bound of the bucket below.
        let at_zero = if power_of_two { exponent - 2 } else { exponent - 1 };
        return at_zero >> -scale;
    }
    if power_of_two {
        return ((exponent - 1) << scale) - 1;
    }
    let scaled = v.log2() * f64::from(1u32 << scale);
    (scaled.ceil() as i64 - 1).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// `v = m * 2^e` with `m` in `[0.5, 1)`.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    if exponent == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(v * 2f64.powi(64));
        return (m, e - 64);
    }
    let mantissa = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (mantissa, exponent - 1022)
}

impl ExponentialHistogram {
    pub fn new(max_size: usize) -> ExponentialHistogram {
        ExponentialHistogram {
            max_size: max_size.max(3),
            scale: MAX_SCALE,
            offset: 0,
            counts: Vec::new(),
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub fn record(&mut self, v: f64) {
        if !v.is_finite() || v < 0.0 {
            return;
        }
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v == 0.0 {
            self.zero_count += 1;
            return;
        }
        let mut i = index(v, self.scale);
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(1);
            return;
        }
        let low = self.offset.min(i);
        let high = (self.offset + self.counts.len() as i32 - 1).max(i);
        let mut shift = 0;
        while i64::from(high >> shift) - i64::from(low >> shift) + 1 > self.max_size as i64
            && self.scale - shift > MIN_SCALE
        {
            shift += 1;
        }
        if shift > 0 {
            self.downscale(shift);
            i = index(v, self.scale);
        }
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i;
        }
        let at = (i - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += 1;
    }

    /// Halves the resolution `shift` times, merging buckets.
    fn downscale(&mut self, shift: i32) {
        self.scale -= shift;
        if self.counts.is_empty() {
            return;
        }
        let new_offset = self.offset >> shift;
        let last = (self.offset + self.counts.len() as i32 - 1) >> shift;
        let mut merged = vec![0; (last - new_offset + 1) as usize];
        for (k, c) in self.counts.iter().enumerate() {
            merged[(((self.offset + k as i32) >> shift) - new_offset) as usize] += c;
        }
        self.offset = new_offset;
        self.counts = merged;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// As an OTLP data point (attributes and times left for the caller).
    pub fn to_point(&self) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            count: self.count,
            sum: Some(self.sum),
            scale: self.scale,
            zero_count: self.zero_count,
            positive: Some(exponential_histogram_data_point::Buckets {
                offset: self.offset,
                bucket_counts: self.counts.clone(),
            }),
            negative: Some(exponential_histogram_data_point::Buckets::default()),
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket bounds `(lower, upper]` of index `i` at `scale`.
    fn bounds(i: i32, scale: i32) -> (f64, f64) {
        let base = 2f64.powf(2f64.powi(-scale));
        (base.powi(i), base.powi(i + 1))
    }

    #[test]
    fn every_value_lands_in_the_bucket_whose_bounds_hold_it() {
        for scale in [-2, 0, 1, 3, 8, 20] {
            for v in [0.001, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 7.3, 30.0, 1024.0, 1e9] {
                let i = index(v, scale);
                let (low, high) = bounds(i, scale);
                let tolerance = high * 1e-9;
                assert!(
                    v > low - tolerance && v <= high + tolerance,
                    "{v} at scale {scale}: bucket {i} = ({low}, {high}]"
                );
            }
        }
        // Exact powers of two are upper bounds.
        assert_eq!(index(1.0, 0), -1);
        assert_eq!(index(2.0, 0), 0);
        assert_eq!(index(4.0, 1), 3);
        assert_eq!((index(4.0, -1), index(8.0, -1), index(16.0, -1)), (0, 1, 1));
    }

    #[test]
    fn it_stays_within_max_size_and_counts_everything() {
        let mut h = ExponentialHistogram::new(20);
        let values: Vec<f64> = (1..=1000).map(|n| n as f64 * 0.37).chain([0.0, 0.0]).collect();
        for v in &values {
            h.record(*v);
        }
        let p = h.to_point();
        let buckets = p.positive.as_ref().unwrap();
        assert!(buckets.bucket_counts.len() <= 20, "{}", buckets.bucket_counts.len());
        assert_eq!(p.count, 1002);
        assert_eq!(p.zero_count, 2);
        assert_eq!(buckets.bucket_counts.iter().sum::<u64>(), 1000);
        // Every value is inside the range the buckets cover.
        let (low, _) = bounds(buckets.offset, p.scale);
        let (_, high) = bounds(buckets.offset + buckets.bucket_counts.len() as i32 - 1, p.scale);
        assert!(low < 0.37 && high >= 370.0, "({low}, {high}] at scale {}", p.scale);
        assert_eq!((p.min, p.max), (Some(0.0), Some(370.0)));
        // One value, or values close together: the finest scale that fits.
        let mut one = ExponentialHistogram::new(160);
        one.record(30.0);
        one.record(30.5);
        assert!(one.to_point().scale >= 10, "{}", one.to_point().scale);
    }

    #[test]
    fn hostile_values_do_not_break_it() {
        let mut h = ExponentialHistogram::new(4);
        for v in [f64::MIN_POSITIVE, 5e-324, f64::MAX, f64::NAN, f64::INFINITY, -1.0, 1.0] {
            h.record(v);
        }
        let p = h.to_point();
        assert_eq!(p.count, 4, "NaN, infinity and negatives are left out");
        assert!(p.scale >= MIN_SCALE, "{}", p.scale);
        assert!(p.positive.unwrap().bucket_counts.len() <= 4);
    }
}
