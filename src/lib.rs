//! wechat-checkout: WeChat Pay (API v2, JSAPI) checkout, notify handling, operations and
//! reconciliation in one Rocket application. A newcomer reads README.md, Rocket.toml, then
//! `main.rs` (the commands) and `app.rs` (how the pieces are assembled).

pub mod app;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod payments;
pub mod simulator;
pub mod staff;
pub mod web;
pub mod wxpay;
