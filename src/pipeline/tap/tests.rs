use super::*;
use crate::toolkit::sample::SampleKind;

fn batch(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            Sample::new(
                SampleKind::Miner,
                format!("m-{i}").into(),
                Default::default(),
            )
        })
        .collect()
}

/// Takes what the watcher holds now, without waiting: (sample lines, skipped).
async fn take(receiver: &TapReceiver) -> (usize, u64) {
    let (mut lines, mut skipped) = (0, 0);
    while let Ok(Some(bytes)) =
        tokio::time::timeout(std::time::Duration::from_millis(10), receiver.recv()).await
    {
        let text = std::str::from_utf8(&bytes).unwrap();
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            match value["tap_skipped_samples"].as_u64() {
                Some(n) => skipped += n,
                None => lines += 1,
            }
        }
    }
    (lines, skipped)
}

#[tokio::test]
async fn a_stalled_watcher_holds_at_most_its_bytes_and_is_told_what_it_skipped() {
    let taps = Taps::default();
    let tap = taps.add("gen");
    let stalled = taps.watch("gen").unwrap();
    let reading = taps.watch("gen").unwrap();
    let per_batch = 1000;
    let mut offered = 0;
    let mut read = (0, 0);
    for _ in 0..200 {
        tap.offer(&batch(per_batch));
        offered += per_batch;
        let (lines, skipped) = take(&reading).await;
        read = (read.0 + lines, read.1 + skipped);
        assert!(stalled.watcher.held.lock().unwrap().bytes <= WATCHER_BYTES);
    }
    assert_eq!(read, (offered, 0), "the reading watcher misses nothing");
    let (lines, skipped) = take(&stalled).await;
    assert!(lines > 0 && skipped > 0, "{lines} {skipped}");
    assert_eq!(lines as u64 + skipped, offered as u64);
}

#[tokio::test]
async fn a_batch_larger_than_the_room_is_cut_at_a_line_and_the_rest_counted() {
    let taps = Taps::default();
    let tap = taps.add("gen");
    let watcher = taps.watch("gen").unwrap();
    let samples = batch(100_000);
    tap.offer(&samples);
    let (lines, skipped) = take(&watcher).await;
    assert!(lines > 0 && skipped > 0, "{lines} {skipped}");
    assert_eq!(lines as u64 + skipped, samples.len() as u64);
}

#[tokio::test]
async fn a_watchers_stream_ends_once_its_tap_is_gone() {
    let taps = Taps::default();
    let tap = taps.add("gen");
    let watcher = taps.watch("gen").unwrap();
    tap.offer(&batch(3));
    taps.remove("gen");
    drop(tap);
    assert_eq!(take(&watcher).await, (3, 0));
    assert!(watcher.recv().await.is_none());
}
