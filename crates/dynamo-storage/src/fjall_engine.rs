//! fjall engine: TODO
