//! Candle errors as messages for people. With `RUST_BACKTRACE` set, candle wraps every error in a
//! captured backtrace that its `Display` prints: twenty frames of library internals inside a one-line
//! error such as a shape mismatch in a model file. The messages here keep the error, not the frames.

/// `e` without the backtraces candle attached (also inside its context and path wrappers).
pub fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } => without_backtrace(*inner),
        E::Context { inner, context } => E::Context { inner: Box::new(without_backtrace(*inner)), context },
        E::WithPath { inner, path } => E::WithPath { inner: Box::new(without_backtrace(*inner)), path },
        other => other,
    }
}

/// The message of `e`, without backtraces.
pub fn message(e: candle_core::Error) -> String {
    without_backtrace(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces_are_left_out_at_any_depth() {
        let bt = |inner: candle_core::Error| candle_core::Error::WithBacktrace {
            inner: Box::new(inner),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        let e = bt(bt(candle_core::Error::Msg("shape mismatch".into())).context("loading the encoder"));
        assert_eq!(message(e), "loading the encoder\nshape mismatch");
    }
}
