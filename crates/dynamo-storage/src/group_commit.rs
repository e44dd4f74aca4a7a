//! group commit: TODO
