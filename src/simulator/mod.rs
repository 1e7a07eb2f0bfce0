//! A faithful WeChat Pay simulator: to be written.
