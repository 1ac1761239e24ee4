//! The sans-IO engine (being written).
