//! The Volcengine RTC OpenAPI: V4 request signing ([`sign`]), answer parsing and
//! classification ([`parse`]), and the HTTP client with retries inside the budget ([`client`]).

pub mod client;
pub mod parse;
pub mod sign;
