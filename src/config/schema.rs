//! JSON Schema of the config (placeholder until the core lands; replaced in this commit series).
pub fn schema() -> serde_json::Value {
    serde_json::json!({})
}
