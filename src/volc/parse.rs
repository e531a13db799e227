//! Parsing and classifying answers: HTTP status plus the envelope's `ResponseMetadata.Error`
//! become an [`crate::model::Outcome`]; `Result.RecordTask` / `Result.WebCastTask` become a
//! [`crate::model::TaskSnapshot`].
//!
//! SKELETON: being implemented.
