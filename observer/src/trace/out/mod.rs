//! The trace's report: the JSON and text views (`render`) and the model's part (`model_view`).
pub mod model_view;
pub mod render;
