//! The inventory: which miners there are, where they answer, and what labels they
//! carry. A CSV file whose header names at least `id` and `address`; every other column
//! is a label (site, rack, model, ...). Sources read it (`targets.inventory`), so does
//! the `enrich` transform; the simulator writes one for its fleet.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::regular_file;
use super::sample::{Labels, FIXED_COLUMNS};

/// One miner of an inventory.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryRow {
    pub id: Arc<str>,
    /// `host:port`, as dialled.
    pub address: String,
    pub labels: Labels,
}

#[derive(Debug, thiserror::Error)]
#[error("inventory {}: {message}", path.display())]
pub(crate) struct InventoryError {
    pub path: PathBuf,
    pub message: String,
}

/// The largest inventory rigtap reads: about 600,000 miners of a hundred bytes each,
/// six times what one source holds. A wrong path (`/dev/zero`, a log) is refused before
/// it is read whole.
const MAX_INVENTORY_BYTES: u64 = 64 << 20;

/// Reads an inventory: a header naming `id` and `address`; other columns become labels.
/// Only a regular file of at most [`MAX_INVENTORY_BYTES`]: a FIFO would block the
/// reader (and a reload, which reads it again).
pub(crate) fn read(path: &Path) -> Result<Vec<InventoryRow>, InventoryError> {
    let error = |message: String| InventoryError {
        path: path.to_owned(),
        message,
    };
    let bytes = regular_file::read(path, MAX_INVENTORY_BYTES)
        .map_err(|e| error(format!("cannot read: {e}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let header = reader.headers().map_err(|e| error(e.to_string()))?.clone();
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            error(format!(
                "the header has no `{name}` column; the first line must name at least `id,address`"
            ))
        })
    };
    let (id_col, address_col) = (column("id")?, column("address")?);
    let mut names = std::collections::HashSet::new();
    if let Some(twice) = header.iter().find(|h| !names.insert(*h)) {
        return Err(error(format!(
            "the header names the column `{twice}` twice; which one would a miner's label be?"
        )));
    }
    // Labels travel beside the sample's own fields (one JSON object, one row).
    if let Some(name) = header.iter().find(|h| FIXED_COLUMNS.contains(h)) {
        return Err(error(format!(
            "the column `{name}` has the name of a sample column, and other columns become labels; rename it"
        )));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| error(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or_default();
        let (id, address) = (field(id_col), field(address_col));
        if id.is_empty() || !is_host_port(address) {
            return Err(error(format!(
                "line {line}: needs an id and an address `host:port` (a port from 1 to 65535; one miner a row, no ranges), found `{id}`, `{address}`"
            )));
        }
        let labels: BTreeMap<String, String> = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != id_col && *i != address_col)
            .map(|(i, name)| (name.to_string(), field(i).to_string()))
            .collect();
        rows.push(InventoryRow {
            id: id.into(),
            address: address.to_string(),
            labels: Arc::new(labels),
        });
    }
    Ok(rows)
}

/// Whether `address` is one `host:port`: a host (not an IPv4 range `A-B`, which is
/// for `targets.addresses`) and a port from 1 to 65535.
fn is_host_port(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let range = host.split_once('-').is_some_and(|(low, high)| {
        low.parse::<std::net::Ipv4Addr>().is_ok() && high.parse::<std::net::Ipv4Addr>().is_ok()
    });
    !host.is_empty() && !range && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Writes `rows` as an inventory CSV: `id,address`, then `columns` (a label a row
/// lacks is an empty field).
pub(crate) fn write(path: &Path, rows: &[InventoryRow], columns: &[&str]) -> std::io::Result<()> {
    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(std::fs::File::create(path)?));
    let header = ["id", "address"].iter().chain(columns);
    out.write_record(header)?;
    for row in rows {
        let labels = columns
            .iter()
            .map(|c| row.labels.get(*c).map_or("", String::as_str));
        let record = [&*row.id, row.address.as_str()].into_iter().chain(labels);
        out.write_record(record)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_become_labels_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        std::fs::write(
            &path,
            "id,address,site,rack\nm1, 10.0.0.1:50051 ,north,r01\nm2,10.0.0.2:50051,\"south, b\",r02\n",
        )
        .unwrap();
        let rows = read(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(&*rows[0].id, "m1");
        assert_eq!(rows[0].address, "10.0.0.1:50051");
        assert_eq!(rows[1].labels["site"], "south, b");
        assert_eq!(rows[1].labels["rack"], "r02");

        let copy = dir.path().join("copy.csv");
        write(&copy, &rows, &["site", "rack"]).unwrap();
        assert_eq!(read(&copy).unwrap(), rows);
    }

    #[test]
    fn a_column_named_like_a_sample_field_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        std::fs::write(&path, "id,address,power_w\nm1,10.0.0.1:50051,3400\n").unwrap();
        let error = read(&path).unwrap_err();
        assert!(
            error.message.contains("the column `power_w`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_bad_inventory_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        std::fs::write(&path, "name,address\nm1,10.0.0.1:50051\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("no `id` column"), "{e}");
        std::fs::write(&path, "id,address\nm1,10.0.0.1\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        for address in [
            "10.0.0.1:99999",
            "10.0.0.1:0",
            "10.0.0.1-10.0.0.9:50051",
            ":50051",
        ] {
            std::fs::write(&path, format!("id,address\nm1,{address}\n")).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(
                e.contains("line 2") && e.contains("no ranges"),
                "{address}: {e}"
            );
        }
        std::fs::write(
            &path,
            "id,address\nm1,[::1]:50051\nm2,miner-a.local:50051\n",
        )
        .unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        std::fs::write(&path, "id,address,site,site\nm1,10.0.0.1:50051,a,b\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("the column `site` twice"), "{e}");
    }
}
