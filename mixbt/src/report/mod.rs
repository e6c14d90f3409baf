//! Tables and charts: polars DataFrames as HTML, plotters charts as SVG (or PNG), and the evcxr
//! display wrappers that show them inline in Jupyter.

pub mod charts;
pub mod display;

pub use charts::*;
pub use display::{FloatFormat, Html, Png, Svg, Table};
