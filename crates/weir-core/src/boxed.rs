//! Values built straight into their heap slot.
//!
//! `Box::new(make())` and `Box::pin(make())` build the value on the stack and then copy it into
//! the box: for a request's future or its log phase that is a copy of hundreds of bytes to
//! kilobytes a request, written into memory no other request has warmed (callgrind counted the
//! copy of the ~10 KB request future at ~10,000 instructions an HTTP/2 request, and the copies
//! into fresh boxes among the cache misses a request takes). Writing the value into
//! uninitialised memory lets the compiler build it in place.
//!
//! ```
//! let fut = weir_core::boxed::pinned(|| async { 1 + 1 });
//! let value = weir_core::boxed::new(|| [0u8; 4096]);
//! assert_eq!(value.len(), 4096);
//! # drop(fut);
//! ```

use std::pin::Pin;

/// `Box::new(make())`, with the value built in the box.
#[inline(always)]
pub fn new<T>(make: impl FnOnce() -> T) -> Box<T> {
    Box::write(Box::new_uninit(), make())
}

/// `Box::pin(make())`, with the value (a future, typically) built in the box.
#[inline(always)]
pub fn pinned<T>(make: impl FnOnce() -> T) -> Pin<Box<T>> {
    Box::into_pin(new(make))
}
