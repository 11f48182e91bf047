//! The criterion settings of every implementation's `key_share_50*` groups (included with
//! `#[path]` by `send.rs`, `send_ours.rs` and `send_matrix_sdk.rs`), so that the figures side
//! by side are measured alike.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};

/// A group for a room-key share to `devices` devices: 10 flat samples, 1 s warm-up, 3 s of
/// measurement, throughput in devices.
pub fn key_share_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    devices: usize,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(devices as u64));
    group
}
