//! proptest strategies that the components' tests share.

use proptest::prelude::*;

/// Any double a miner could send, the hostile ones often.
pub(crate) fn hostile_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
        -1e6f64..1e6,
    ]
}
