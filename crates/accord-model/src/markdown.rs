//! Markdown rendering and reading back (being written).
