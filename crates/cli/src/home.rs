//! Where rightmodel keeps its state: `$RIGHTMODEL_HOME`, default `~/.cache/rightmodel`.
pub use rightmodel_models::home::rightmodel_home;
