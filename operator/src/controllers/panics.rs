//! Catching panics at the reconcile boundary, with their location and backtrace.
//!
//! A process-wide panic hook records the panic of the current thread when it happens
//! inside [`catch`], so that the caller can log it once, as one structured record with the
//! controller and object. Panics elsewhere are logged by the hook itself.

use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use futures::FutureExt;

/// A panic caught inside a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtPanic {
    /// The panic message.
    pub message: String,
    /// `file:line:column` of the panic.
    pub location: String,
    /// The backtrace, captured whatever `RUST_BACKTRACE` says.
    pub backtrace: String,
}

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST: RefCell<Option<CaughtPanic>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs the panic hook once for the process.
pub fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = payload_message(info.payload());
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            let backtrace = Backtrace::force_capture().to_string();
            if CATCHING.get() {
                LAST.set(Some(CaughtPanic { message, location, backtrace }));
            } else {
                tracing::error!(panic.message = %message, panic.location = %location, panic.backtrace = %backtrace, "panic");
                previous(info);
            }
        }));
    });
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

/// Runs `future`, turning a panic inside it into `Err(CaughtPanic)`.
pub async fn catch<F: Future>(future: F) -> Result<F::Output, CaughtPanic> {
    install_hook();
    let mut future = Box::pin(AssertUnwindSafe(future).catch_unwind());
    let result = std::future::poll_fn(|cx| {
        let was = CATCHING.replace(true);
        let poll = future.as_mut().poll(cx);
        CATCHING.set(was);
        poll
    })
    .await;
    result.map_err(|payload| {
        LAST.take().unwrap_or_else(|| CaughtPanic {
            message: payload_message(payload.as_ref()),
            location: String::new(),
            backtrace: String::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_location_and_backtrace() {
        let caught = catch(async {
            tokio::task::yield_now().await;
            let items: Vec<u8> = Vec::new();
            items[3]
        })
        .await
        .expect_err("the future panics");
        assert!(
            caught.message.contains("index out of bounds"),
            "{}",
            caught.message
        );
        assert!(caught.location.contains("panics.rs"), "{}", caught.location);
        assert!(caught.backtrace.contains("panics"), "{}", caught.backtrace);
    }

    #[tokio::test]
    async fn a_normal_future_passes_through() {
        assert_eq!(catch(async { 7 }).await, Ok(7));
    }
}
