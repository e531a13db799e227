//! V4 (HMAC-SHA256) request signing, as the vendor's SDKs do it: a pure function of the
//! request, the credentials and the time.
//!
//! SKELETON: being implemented.
