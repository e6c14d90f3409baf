//! `mixbt` for notebooks: everything of the library, re-exported from one dynamic library so
//! that all evcxr cells share one copy of its statics (see `Cargo.toml`).
pub use mixbt::*;
