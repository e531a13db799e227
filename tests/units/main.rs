//! The unit tests of modules whose tests need only their public items, one module per source
//! file, in one test binary.

mod auth_hold;
mod budget;
mod callbacks_event;
mod callbacks_verify;
mod cli;
mod exposition;
mod http_accept;
mod http_body;
mod http_routes;
mod parse;
mod parse_fixtures;
mod scheduler;
mod sign;
#[cfg(feature = "sim")]
mod sim_verify;
mod table;
