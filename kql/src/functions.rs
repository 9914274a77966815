//! Tarn's own scalar functions that KQL plans call.
