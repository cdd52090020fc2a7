//! Shared test setup: the default models from the store (the test script pulls them first).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use rightmodel_infer::{Engine, EngineConfig, MiniLm};
use rightmodel_models::{home::rightmodel_home, Store};

pub fn gguf() -> PathBuf {
    Store::new(&rightmodel_home())
        .resolve_gguf("gemma3-270m")
        .expect("default GGUF missing: run `rightmodel pull all` first (the test script does)")
}

pub fn encoder_dir() -> PathBuf {
    Store::new(&rightmodel_home())
        .resolve_encoder("minilm-l6")
        .expect("default encoder missing: run `rightmodel pull all` first (the test script does)")
}

pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut cfg = EngineConfig::new(gguf());
        cfg.slots = 4;
        cfg.ctx_per_slot = 1024;
        Engine::start(cfg).expect("engine starts")
    })
}

pub fn minilm() -> &'static MiniLm {
    static M: OnceLock<MiniLm> = OnceLock::new();
    M.get_or_init(|| MiniLm::load(&encoder_dir()).expect("encoder loads"))
}

/// An engine with a single slot: sequences never share a batch, so results do not depend on what
/// other tests run at the same time (batched decoding can differ on near-ties).
pub fn solo_engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut cfg = EngineConfig::new(gguf());
        cfg.slots = 1;
        cfg.ctx_per_slot = 1024;
        Engine::start(cfg).expect("engine starts")
    })
}
