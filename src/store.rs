//! The target table: each target's last snapshot, whether its last poll succeeded, and its
//! exposition text kept ready (redone only when the target changes); stop counting.
//!
//! SKELETON: being implemented.
