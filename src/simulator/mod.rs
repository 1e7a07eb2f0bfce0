//! A faithful WeChat Pay simulator: to be written.

pub mod bill_text;
