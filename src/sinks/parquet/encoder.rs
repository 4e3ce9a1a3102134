//! Samples to an Arrow `RecordBatch` in the sample schema (src/sample.rs), minus the
//! columns the partition path already carries.

use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt32Array,
    UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};

use crate::toolkit::sample::{arrow_schema, number_field, text_field, Sample};

/// The schema of the files: every sample column and declared label, except `partition`'s.
pub fn file_schema<'a>(labels: &[String], partition: impl Iterator<Item = &'a str>) -> SchemaRef {
    let skip: Vec<&str> = partition.collect();
    let full = arrow_schema(labels);
    let fields: Vec<_> = full
        .fields()
        .iter()
        .filter(|f| !skip.contains(&f.name().as_str()))
        .cloned()
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn record_batch(samples: &[Sample], schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| column(samples, field.name(), field.data_type()))
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

fn column(samples: &[Sample], name: &str, kind: &DataType) -> Result<ArrayRef, ArrowError> {
    let u64s = |get: fn(&Sample) -> Option<u64>| -> ArrayRef {
        Arc::new(UInt64Array::from_iter(samples.iter().map(get)))
    };
    Ok(match name {
        "timestamp" => Arc::new(
            TimestampMillisecondArray::from_iter_values(
                samples.iter().map(|s| s.timestamp.timestamp_millis()),
            )
            .with_timezone("UTC"),
        ),
        "gap_end" => Arc::new(
            TimestampMillisecondArray::from_iter(
                samples
                    .iter()
                    .map(|s| s.gap_end.map(|t| t.timestamp_millis())),
            )
            .with_timezone("UTC"),
        ),
        "missed" => Arc::new(UInt32Array::from_iter(samples.iter().map(|s| s.missed))),
        "board" => Arc::new(UInt32Array::from_iter(samples.iter().map(|s| s.board))),
        "chips" => Arc::new(UInt32Array::from_iter(samples.iter().map(|s| s.chips))),
        "shares_accepted" => u64s(|s| s.shares_accepted),
        "shares_rejected" => u64s(|s| s.shares_rejected),
        "shares_stale" => u64s(|s| s.shares_stale),
        "uptime_s" => u64s(|s| s.uptime_s),
        "shares_accepted_delta" => u64s(|s| s.shares_accepted_delta),
        "shares_rejected_delta" => u64s(|s| s.shares_rejected_delta),
        "shares_stale_delta" => u64s(|s| s.shares_stale_delta),
        "message" => Arc::new(StringArray::from_iter(
            samples.iter().map(|s| s.message.as_deref()),
        )),
        _ => match kind {
            // A value that is not a finite number (a firmware's `NaN`) is written as
            // null, as the JSON of the disk buffer and of the other sinks has it: a
            // file holds the same whichever buffer it came through, and one NaN does
            // not turn a reader's average into NaN.
            DataType::Float64 => {
                let get = number_field(name).ok_or_else(|| unknown(name))?;
                let finite = |s: &Sample| get(s).filter(|v| v.is_finite());
                Arc::new(Float64Array::from_iter(samples.iter().map(finite)))
            }
            DataType::Dictionary(..) => {
                let mut builder = StringDictionaryBuilder::<Int32Type>::new();
                match text_field(name) {
                    Some(get) => samples.iter().for_each(|s| builder.append_option(get(s))),
                    None => samples.iter().for_each(|s| {
                        builder.append_option(s.labels.get(name).map(String::as_str))
                    }),
                }
                Arc::new(builder.finish())
            }
            _ => return Err(unknown(name)),
        },
    })
}

fn unknown(name: &str) -> ArrowError {
    ArrowError::SchemaError(format!("no sample field for column `{name}`"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_array::cast::AsArray;
    use arrow_array::Array;

    use super::*;
    use crate::toolkit::sample::SampleKind;

    #[test]
    fn columns_are_typed_and_absent_is_null() {
        let labels = Arc::new(BTreeMap::from([("site".to_string(), "north".to_string())]));
        let mut a = Sample::new(SampleKind::Miner, "m-1".into(), labels.clone());
        a.hashrate_ths = Some(200.5);
        a.shares_accepted = Some(u64::MAX);
        a.power_w = Some(f64::NAN);
        let mut b = Sample::new(SampleKind::Status, "m-2".into(), Arc::default());
        b.code = Some(crate::toolkit::sample::StatusCode::Timeout);
        b.power_w = Some(f64::NEG_INFINITY);
        let schema = file_schema(&["site".to_string()], ["kind"].into_iter());
        assert!(
            schema.field_with_name("kind").is_err(),
            "partition columns stay in the path"
        );
        let batch = record_batch(&[a, b], &schema).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let hashrate = batch
            .column_by_name("hashrate_ths")
            .unwrap()
            .as_primitive::<arrow_array::types::Float64Type>();
        assert_eq!(hashrate.value(0), 200.5);
        assert!(hashrate.is_null(1));
        let power = batch.column_by_name("power_w").unwrap();
        assert_eq!(power.null_count(), 2, "NaN and infinity are null");
        let shares = batch
            .column_by_name("shares_accepted")
            .unwrap()
            .as_primitive::<arrow_array::types::UInt64Type>();
        assert_eq!(shares.value(0), u64::MAX, "counters keep all 64 bits");
        let code = batch
            .column_by_name("code")
            .unwrap()
            .as_dictionary::<Int32Type>();
        let codes = code.values().as_string::<i32>();
        assert!(code.is_null(0));
        assert_eq!(codes.value(code.keys().value(1) as usize), "timeout");
        let site = batch.column_by_name("site").unwrap();
        assert!(matches!(site.data_type(), DataType::Dictionary(..)));
        assert!(
            site.is_null(1),
            "a miner without the label has a null, not an empty string"
        );
    }
}
