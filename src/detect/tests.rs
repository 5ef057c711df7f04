//! Unit tests of the detector, call by call.
