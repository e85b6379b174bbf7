//! The line a split's shares divide, and the share a mirror copies: a million parts, so a
//! share as small as 0.0001 % is exact.

/// Parts of the line.
pub(crate) const PARTS: u32 = 1_000_000;
