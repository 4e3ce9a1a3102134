//! The size of the future an async function returns, found without calling it. A task's
//! future lives as long as the task, so the tests hold each per-miner task to a size.

/// `future_size!(function, Arg, ...)`: the size of the future `function` returns
/// when called with arguments of those types.
macro_rules! future_size {
    ($function:expr $(, $arg:ty)*) => {{
        fn size<F: std::future::Future>(_: fn($($arg),*) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        size($function)
    }};
}

pub(crate) use future_size;
