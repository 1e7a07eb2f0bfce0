//! The text format of WeChat Pay bills, written from simulator records: to be written.
