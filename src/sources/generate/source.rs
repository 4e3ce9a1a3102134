//! The generate source's loop: a synthetic fleet visited round-robin, paced to `rate`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::config::GenerateConfig;
use crate::pipeline::batch::Batch;
use crate::pipeline::component::{ComponentResult, SourceConfig, SourceContext, Started};
use crate::toolkit::sample::{Labels, Sample, SampleKind};

impl SourceConfig for GenerateConfig {
    fn start(self: Box<Self>, ctx: SourceContext) -> Started {
        Started::task(run(*self, ctx))
    }
}

/// Emits samples until `count` is reached or the pipeline stops.
async fn run(config: GenerateConfig, mut ctx: SourceContext) -> ComponentResult {
    let mut fleet = Fleet::new(&config);
    let (batch_size, mut ticker) = pacing(&config);
    let mut emitted: u64 = 0;
    loop {
        let remaining = config.count.map_or(u64::MAX, |count| count - emitted);
        if remaining == 0 {
            break;
        }
        // Check for a stop before each batch; a batch once built is always delivered.
        if let Some(ticker) = ticker.as_mut() {
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
        } else if ctx.stop.is_cancelled() {
            break;
        }
        let n = remaining.min(batch_size as u64) as usize;
        let samples: Vec<Sample> = (0..n).map(|_| fleet.next_sample()).collect();
        let batch = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            batch = Batch::new(samples, &ctx.budget) => batch,
        };
        ctx.out.send(batch).await;
        emitted += n as u64;
    }
    tracing::info!(source = %ctx.id, emitted, "generate source finished");
    Ok(())
}

/// Batch size and tick: without a rate, as fast as downstream takes; with one, about ten
/// batches a second (fewer samples per batch for low rates, so they are not bursty).
fn pacing(config: &GenerateConfig) -> (usize, Option<tokio::time::Interval>) {
    match config.rate {
        None => (config.batch_size, None),
        Some(rate) => {
            let size = ((rate / 10.0).ceil() as usize).clamp(1, config.batch_size);
            let period = Duration::from_secs_f64(size as f64 / rate);
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (size, Some(ticker))
        }
    }
}

/// The synthetic miners, visited round-robin.
struct Fleet {
    miners: Vec<SyntheticMiner>,
    next: usize,
    rng: fastrand::Rng,
}

struct SyntheticMiner {
    id: Arc<str>,
    labels: Labels,
    samples: u64,
    nominal_ths: f64,
}

impl Fleet {
    fn new(config: &GenerateConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let labels: BTreeMap<String, String> = config.labels.clone();
        let labels: Labels = Arc::new(labels);
        let miners = (0..config.miners)
            .map(|i| SyntheticMiner {
                id: format!("gen-{i:05}").into(),
                labels: labels.clone(),
                samples: 0,
                // An S21-class fleet: 200-250 TH/s nominal.
                nominal_ths: 200.0 + 50.0 * rng.f64(),
            })
            .collect();
        Fleet {
            miners,
            next: 0,
            rng,
        }
    }

    fn next_sample(&mut self) -> Sample {
        let index = self.next;
        self.next = (self.next + 1) % self.miners.len();
        let miner = &mut self.miners[index];
        miner.samples += 1;
        let mut sample = Sample::new(SampleKind::Miner, miner.id.clone(), miner.labels.clone());
        let load = 0.97 + 0.06 * self.rng.f64();
        let hashrate = miner.nominal_ths * load;
        let power = hashrate * 14.1;
        sample.miner_status = Some("normal".into());
        sample.hashrate_ths = Some(hashrate);
        sample.hashrate_nominal_ths = Some(miner.nominal_ths);
        sample.power_w = Some(power);
        sample.efficiency_jth = Some(power / hashrate);
        sample.temp_chip_c = Some(62.0 + 14.0 * load + 2.0 * self.rng.f64());
        sample.temp_board_c = Some(50.0 + 10.0 * load + 2.0 * self.rng.f64());
        sample.fan_rpm = Some(5600.0 + 600.0 * self.rng.f64());
        sample.shares_accepted = Some(miner.samples);
        sample.shares_rejected = Some(miner.samples / 200);
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(miners: u32, seed: u64) -> GenerateConfig {
        GenerateConfig {
            count: None,
            rate: None,
            miners,
            batch_size: 100,
            seed,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn counters_are_contiguous_per_miner() {
        let mut fleet = Fleet::new(&config(3, 1));
        let samples: Vec<Sample> = (0..9).map(|_| fleet.next_sample()).collect();
        for miner in ["gen-00000", "gen-00001", "gen-00002"] {
            let seen: Vec<u64> = samples
                .iter()
                .filter(|s| &*s.miner_id == miner)
                .map(|s| s.shares_accepted.unwrap())
                .collect();
            assert_eq!(seen, vec![1, 2, 3]);
        }
    }

    #[test]
    fn same_seed_same_fleet() {
        let a = Fleet::new(&config(5, 7)).next_sample().hashrate_ths;
        let b = Fleet::new(&config(5, 7)).next_sample().hashrate_ths;
        let c = Fleet::new(&config(5, 8)).next_sample().hashrate_ths;
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[tokio::test]
    async fn pacing_keeps_small_rates_smooth() {
        let mut c = config(1, 0);
        c.rate = Some(5.0);
        assert_eq!(pacing(&c).0, 1);
        c.rate = Some(100_000.0);
        assert_eq!(pacing(&c).0, 100);
    }
}
