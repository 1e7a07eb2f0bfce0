//! Bill parsing: to be written.
