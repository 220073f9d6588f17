//! The trace's report: the typed document the tracer fills (`render::document`, the model's part
//! in `model_view`), rendered as JSON (`TraceDoc::to_json`) or text (`text`); and the live rows.
pub mod model_view;
pub mod render;
pub mod text;
