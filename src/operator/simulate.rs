//! `rigtap sim`: serves a simulated fleet until a signal or the end of its duration.

use std::path::Path;
use std::time::Duration;

use super::signals::{self, Signals};
use crate::sim::{Fleet, SimConfig, SimError};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Start(#[from] SimError),
    #[error("{}: cannot write the inventory: {source}", path.display())]
    Inventory {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Serves `config`'s fleet, writing its inventory to `inventory` first if asked.
pub async fn serve(
    config: SimConfig,
    inventory: Option<&Path>,
    signals: &mut Signals,
    duration: Option<Duration>,
) -> Result<(), SimulateError> {
    let started = std::time::Instant::now();
    let fleet = Fleet::start(config).await?;
    if let Some(path) = inventory {
        fleet
            .write_inventory(path)
            .map_err(|source| SimulateError::Inventory {
                path: path.to_owned(),
                source,
            })?;
    }
    let last = fleet.len().saturating_sub(1);
    tracing::info!(
        miners = fleet.len(),
        first = %fleet.address(0),
        last = %fleet.address(last),
        startup_ms = started.elapsed().as_millis() as u64,
        "simulated fleet ready"
    );
    println!(
        "ready: {} miners, {} to {}",
        fleet.len(),
        fleet.address(0),
        fleet.address(last)
    );
    tokio::select! {
        signal = signals.recv() => tracing::info!(%signal, "stopping the simulated fleet"),
        _ = signals::deadline(duration) => {}
    }
    fleet.shutdown().await;
    Ok(())
}
