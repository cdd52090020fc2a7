//! The gateway's configuration: one TOML file, deserialised once and validated at start-up with errors
//! that name the key at fault.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rightmodel_core::Price;
use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax or type error (the message carries line and column).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What toml said, with the line.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("invalid config: `{key}`: {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// Why.
        message: String,
    },
}

/// Whether `name` can be a folder under `$RIGHTMODEL_HOME` (classifiers, collections): not empty, not
/// hidden, no separators.
fn is_folder_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', ':'])
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

/// The whole configuration (see `rightmodel.example.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and limits.
    #[serde(default)]
    pub server: ServerSection,
    /// Local GGUF chat models.
    #[serde(default, rename = "local")]
    pub locals: Vec<LocalModel>,
    /// The local sentence encoder.
    #[serde(default)]
    pub embedding: Option<EmbeddingModel>,
    /// Models behind OpenAI-compatible upstreams.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamModel>,
    /// Trained classifiers to serve on `/v1/classify`, and with `route = true` as `auto` candidates.
    #[serde(default, rename = "classifier")]
    pub classifiers: Vec<ClassifierEntry>,
    /// Document collections to serve as `docs:NAME`.
    #[serde(default, rename = "docs")]
    pub docs: Vec<DocsEntry>,
    /// API keys; when none are configured the gateway is open.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyConfig>,
    /// How `model: "auto"` is served.
    #[serde(default)]
    pub route: RouteSection,
    /// Gateway-wide spend budget.
    #[serde(default)]
    pub budget: BudgetSection,
    /// The file it was read from (keys are read again from it on SIGHUP).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Listen address.
    pub host: String,
    /// Listen port.
    pub port: u16,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Request log database (default `$RIGHTMODEL_HOME/rightmodel.db`).
    pub log_path: Option<PathBuf>,
    /// Days of request-log rows kept; older ones are deleted hourly (default: all are kept).
    pub log_retention_days: Option<u32>,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Embedding requests in flight (waiting for or inside a shared encoder call) before 429.
    pub max_embed_concurrency: usize,
    /// `GET /metrics` needs an API key too (when `[[key]]`s are configured). Off by default: Prometheus
    /// scrapers usually reach it on a private network, and it names models and spend, never keys.
    pub metrics_require_key: bool,
    /// Client connections held open at once; beyond them new connections wait to be accepted, so
    /// idle or stalled sockets cannot take every file descriptor the request log and models need.
    pub max_connections: usize,
    /// Seconds a connection gets to send a request's complete headers, counted from when it waits for
    /// them (a new connection, or a kept-alive one between requests). A client that sends nothing, or
    /// its headers a byte at a time (slowloris), is disconnected then instead of holding a connection
    /// of `max_connections` forever.
    pub header_read_timeout_secs: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            host: "127.0.0.1".into(),
            port: 8080,
            max_body_bytes: 4 * 1024 * 1024,
            log_path: None,
            log_retention_days: None,
            shutdown_grace_secs: 30,
            max_embed_concurrency: 64,
            metrics_require_key: false,
            max_connections: 4096,
            header_read_timeout_secs: 30,
        }
    }
}

/// `[[local]]`: a GGUF model served in-process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalModel {
    /// Name clients use.
    pub name: String,
    /// A pulled model's name (`gemma3-270m`) or a path to a GGUF file.
    pub model: String,
    /// Sequences decoded together.
    #[serde(default = "default_slots")]
    pub slots: usize,
    /// Tokens per sequence (prompt + completion).
    #[serde(default = "default_ctx")]
    pub ctx_per_slot: u32,
    /// Requests waiting beyond the slots before 429.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Optional price (e.g. to account for hardware cost).
    #[serde(default)]
    pub input_per_mtok: f64,
    /// Optional price per million output tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
    /// Optional price per million prompt tokens reused from the KV cache (default: `input_per_mtok`).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
}

impl LocalModel {
    /// Price per million tokens.
    pub fn price(&self) -> Price {
        Price {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            cached_input_per_mtok: self.cached_input_per_mtok,
        }
    }
}

fn default_slots() -> usize {
    4
}
fn default_ctx() -> u32 {
    2048
}
fn default_queue() -> usize {
    64
}

/// `[embedding]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingModel {
    /// Name clients use.
    pub name: String,
    /// A pulled model's name (`minilm-l6`) or a safetensors directory.
    pub model: String,
}

/// `[[upstream]]`: a model behind an OpenAI-compatible API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamModel {
    /// Name clients use.
    pub name: String,
    /// Base URL up to and including `/v1`. A query string stays at the end of every call's URL
    /// (Azure OpenAI's `?api-version=...`).
    pub base_url: String,
    /// Environment variable holding the API key (optional for keyless upstreams). Named but unset or
    /// empty, it stops the gateway at start: every call would fail with the upstream's 401.
    /// Surrounding whitespace is ignored (keys mounted from files often end in a newline).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Header that carries the key: `Authorization: Bearer <key>` by default; another name sends the
    /// key as that header's whole value (Azure OpenAI: `api-key`).
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Extra headers sent with every call (e.g. `OpenAI-Organization`, a proxy's routing header); not
    /// for secrets, which belong in `api_key_env`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Model id sent upstream (default: `name`).
    #[serde(default)]
    pub model: Option<String>,
    /// Dollars per million prompt tokens.
    #[serde(default)]
    pub input_per_mtok: f64,
    /// Dollars per million completion tokens.
    #[serde(default)]
    pub output_per_mtok: f64,
    /// Dollars per million prompt tokens the upstream reports as cache hits
    /// (`usage.prompt_tokens_details.cached_tokens`; providers bill them cheaper). Default:
    /// `input_per_mtok`.
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    /// TCP connect timeout.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Streams: time to the first event, and longest gap between events; keep-alive comments count as
    /// signs of life (a reasoning model may think for minutes while its server sends them).
    /// Non-streaming answers arrive whole and are bounded by `total_timeout_ms` alone.
    #[serde(default = "default_first_ms")]
    pub first_token_timeout_ms: u64,
    /// Whole-request timeout.
    #[serde(default = "default_total_ms")]
    pub total_timeout_ms: u64,
    /// Retries on failed connections, 429 (not `insufficient_quota`) and 5xx. A call the upstream may
    /// have started (a timeout, a connection lost after sending) is not repeated: it moves on to the
    /// fallbacks instead of paying for the same generation twice.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Models to try, in order, when this one fails.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Whether the model returns evidence for its answers.
    #[serde(default)]
    pub explainable: bool,
    /// Relative capability (0..1), used to order escalation.
    #[serde(default = "default_tier")]
    pub tier: f32,
    /// Whether the model takes `tools` and returns tool calls (they are passed through as is).
    #[serde(default = "default_true")]
    pub tools: bool,
    /// Whether streams ask the upstream for usage (`stream_options.include_usage`); turn off for servers
    /// that reject the field (usage is then estimated from the text).
    #[serde(default = "default_true")]
    pub stream_usage: bool,
    /// PEM file of certificate authorities trusted for this upstream besides the public web roots: a
    /// private CA (an in-house inference server) or a TLS-inspecting corporate proxy. Relative to the
    /// config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}
fn default_connect_ms() -> u64 {
    5_000
}
fn default_first_ms() -> u64 {
    60_000
}
fn default_total_ms() -> u64 {
    300_000
}
fn default_retries() -> u32 {
    2
}
/// A price per million tokens must be a finite, non-negative number: a NaN would turn every cost it
/// touches into NaN, which the request log cannot store.
fn check_price(field: String, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field, "prices must be finite and not negative"))
    }
}

fn default_tier() -> f32 {
    1.0
}

impl UpstreamModel {
    /// Price per million tokens.
    pub fn price(&self) -> Price {
        Price {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            cached_input_per_mtok: self.cached_input_per_mtok,
        }
    }
}

/// `[[docs]]`: a document collection served as `docs:NAME`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocsEntry {
    /// Name (clients use `docs:NAME`).
    pub name: String,
    /// Directory (default: `$RIGHTMODEL_HOME/docs/NAME`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A `[[local]]` model that re-orders the first passages by how likely it finds the question after
    /// each: more often the right passage, at a forward pass over them per question.
    #[serde(default)]
    pub rerank_lm: Option<String>,
    /// Passages that model re-orders (2 to 8).
    #[serde(default = "default_rerank_lm_depth")]
    pub rerank_lm_depth: usize,
    /// A `[[local]]` model that reads the best sentences and picks the answer sentence and span by its
    /// readings (short generations, about two per question); the same model as `rerank_lm` when both
    /// are set.
    #[serde(default)]
    pub read_lm: Option<String>,
    /// The upstream chat model that answers, from the retrieved passages, the questions the documents
    /// answer unsure. Without it: the strongest upstream among `[route] candidates` (all upstreams when
    /// that list is empty).
    #[serde(default)]
    pub escalate_to: Option<String>,
}

impl DocsEntry {
    /// The `[[local]]` model that reads this collection's passages, if any.
    pub fn lm(&self) -> Option<&str> {
        self.rerank_lm.as_deref().or(self.read_lm.as_deref())
    }
}

fn default_rerank_lm_depth() -> usize {
    rightmodel_docs::params::LM_DEPTH
}

/// `[[classifier]]`: a trained classifier to serve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierEntry {
    /// Name clients use (`/v1/classify`, and as the model that answered).
    pub name: String,
    /// Directory (default: `$RIGHTMODEL_HOME/classifiers/NAME`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Let `auto` answer chat requests in this classifier's domain with its label: when the last user
    /// turn resembles its training data and it is confident, it serves instead of a language model.
    #[serde(default)]
    pub route: bool,
    /// Least confidence (its top label's probability) for it to serve a chat request.
    #[serde(default = "default_domain_confidence")]
    pub min_confidence: f32,
    /// Least domain fit for it to serve: `in_domain` is the share of its validation texts that are no
    /// closer to the training data than the request, so 0.1 admits texts as typical as all but the 10%
    /// most unusual of its own validation data.
    #[serde(default = "default_min_in_domain")]
    pub min_in_domain: f32,
}

fn default_domain_confidence() -> f32 {
    0.8
}

fn default_min_in_domain() -> f32 {
    0.1
}

/// `[[key]]`: an API key, stored hashed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Name shown in logs and metrics (never the key itself).
    pub name: String,
    /// Hex sha256 of the bearer token (`rightmodel serve --hash-key TOKEN` prints it).
    pub sha256: String,
    /// Requests per minute (0 = unlimited).
    #[serde(default)]
    pub requests_per_minute: u32,
    /// Dollars per UTC day (0 = unlimited).
    #[serde(default)]
    pub daily_spend_usd: f64,
    /// Models this key may use (empty = all): the ones it names, those `auto` may choose, fallbacks and
    /// escalations. A list of only `auto` leaves the choice to the gateway.
    #[serde(default)]
    pub models: Vec<String>,
}

/// How `auto` requests are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Score difficulty, send hard requests to the large model.
    #[default]
    Threshold,
    /// Small model first, escalate when its confidence is low.
    Cascade,
}

/// `[route]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSection {
    /// Strategy for `auto`.
    pub strategy: Strategy,
    /// Candidate models for `auto` (default: every chat model).
    pub candidates: Vec<String>,
    /// Difficulty threshold above which the stronger model serves (overrides `strong_share`).
    pub threshold: Option<f32>,
    /// Target share of requests sent to the strongest model (calibrated threshold).
    pub strong_share: Option<f32>,
    /// Directory of trained router weights (default: `$RIGHTMODEL_HOME/router` when it holds
    /// weights, else the shipped ones).
    pub router_dir: Option<PathBuf>,
    /// Cascade: smallest mean token probability of the small answer to keep it.
    pub min_confidence: f32,
    /// Default per-request cost cap.
    pub max_cost_usd: Option<f64>,
    /// Default per-request latency cap.
    pub max_latency_ms: Option<f64>,
}

impl Default for RouteSection {
    fn default() -> Self {
        RouteSection {
            strategy: Strategy::Threshold,
            candidates: Vec::new(),
            threshold: None,
            strong_share: None,
            router_dir: None,
            min_confidence: 0.5,
            max_cost_usd: None,
            max_latency_ms: None,
        }
    }
}

/// `[budget]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSection {
    /// Dollars per UTC day across all keys (0 or absent = unlimited).
    pub daily_usd: f64,
}

impl Config {
    /// Defaults: the local default chat and embedding models, no upstreams, no keys.
    pub fn default_local() -> Self {
        Config {
            server: ServerSection::default(),
            locals: vec![LocalModel {
                name: rightmodel_models::DEFAULT_CHAT_MODEL.into(),
                model: rightmodel_models::DEFAULT_CHAT_MODEL.into(),
                slots: default_slots(),
                ctx_per_slot: default_ctx(),
                queue: default_queue(),
                input_per_mtok: 0.0,
                output_per_mtok: 0.0,
                cached_input_per_mtok: None,
            }],
            embedding: Some(EmbeddingModel {
                name: rightmodel_models::DEFAULT_EMBED_MODEL.into(),
                model: rightmodel_models::DEFAULT_EMBED_MODEL.into(),
            }),
            upstreams: Vec::new(),
            classifiers: Vec::new(),
            docs: Vec::new(),
            keys: Vec::new(),
            route: RouteSection::default(),
            budget: BudgetSection::default(),
            source: None,
        }
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let mut cfg = Self::parse(&text, &path.display().to_string())?;
        cfg.resolve_paths(path.parent().unwrap_or(Path::new("")));
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Makes relative paths (request log, router, classifier and collection folders, model files) relative to the
    /// config file's folder, not to wherever the server happens to be started: a service started from
    /// another working directory would otherwise open a new, empty log and forget the day's spend.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.server.log_path.iter_mut().for_each(fix);
        self.route.router_dir.iter_mut().for_each(fix);
        self.classifiers.iter_mut().filter_map(|c| c.path.as_mut()).for_each(fix);
        self.docs.iter_mut().filter_map(|d| d.path.as_mut()).for_each(fix);
        self.upstreams.iter_mut().filter_map(|u| u.ca_file.as_mut()).for_each(fix);
        // Model files given as relative paths too (a pulled model's bare name stays a name).
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        self.locals.iter_mut().for_each(|m| fix_spec(&mut m.model, base, home.as_deref()));
        self.embedding.iter_mut().for_each(|m| fix_spec(&mut m.model, base, home.as_deref()));
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules: unique names, known fallbacks and candidates, sane numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let all = self
            .locals
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("local[{i}]"), &m.name))
            .chain(self.upstreams.iter().enumerate().map(|(i, m)| (format!("upstream[{i}]"), &m.name)))
            .chain(self.embedding.iter().map(|m| ("embedding".to_string(), &m.name)))
            .chain(self.classifiers.iter().enumerate().map(|(i, m)| (format!("classifier[{i}]"), &m.name)));
        for (section, name) in all {
            if name.is_empty() || name == "auto" || name.starts_with("docs:") {
                return Err(invalid(format!("{section}.name"), format!("`{name}` is reserved or empty")));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(format!("{section}.name"), format!("model name `{name}` is used twice")));
            }
        }
        for (i, c) in self.classifiers.iter().enumerate() {
            // The name is a folder under `classifiers/` when no path is given.
            if !is_folder_name(&c.name) {
                return Err(invalid(format!("classifier[{i}].name"), format!("`{}` is not a classifier name", c.name)));
            }
            if !(0.0..=1.0).contains(&c.min_confidence) {
                return Err(invalid(format!("classifier[{i}].min_confidence"), "must be between 0 and 1"));
            }
            if !(0.0..=1.0).contains(&c.min_in_domain) {
                return Err(invalid(format!("classifier[{i}].min_in_domain"), "must be between 0 and 1"));
            }
            if c.route && self.embedding.is_none() {
                return Err(invalid(
                    format!("classifier[{i}].route"),
                    "a routed classifier needs an [embedding] model",
                ));
            }
        }
        if self.server.log_retention_days == Some(0) {
            return Err(invalid("server.log_retention_days", "must be at least 1 (leave it out to keep every row)"));
        }
        if let Err(why) = check_host(&self.server.host) {
            return Err(invalid("server.host", why));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if self.server.header_read_timeout_secs == 0 {
            return Err(invalid("server.header_read_timeout_secs", "must be at least 1"));
        }
        let mut docs = HashSet::new();
        for (i, d) in self.docs.iter().enumerate() {
            if !is_folder_name(&d.name) {
                return Err(invalid(format!("docs[{i}].name"), format!("`{}` is not a collection name", d.name)));
            }
            if !docs.insert(d.name.clone()) {
                return Err(invalid(format!("docs[{i}].name"), format!("collection `{}` is listed twice", d.name)));
            }
            for (key, lm) in [("rerank_lm", &d.rerank_lm), ("read_lm", &d.read_lm)] {
                if let Some(lm) = lm {
                    if !self.locals.iter().any(|l| &l.name == lm) {
                        return Err(invalid(format!("docs[{i}].{key}"), format!("no [[local]] model is named `{lm}`")));
                    }
                }
            }
            if let (Some(a), Some(b)) = (&d.rerank_lm, &d.read_lm) {
                if a != b {
                    return Err(invalid(
                        format!("docs[{i}].read_lm"),
                        format!("`{b}` differs from rerank_lm `{a}`: one model reads a collection's passages"),
                    ));
                }
            }
            if let Some(m) = &d.escalate_to {
                if !self.upstreams.iter().any(|u| &u.name == m) {
                    return Err(invalid(
                        format!("docs[{i}].escalate_to"),
                        format!("no [[upstream]] model is named `{m}`"),
                    ));
                }
            }
            if !(2..=8).contains(&d.rerank_lm_depth) {
                return Err(invalid(format!("docs[{i}].rerank_lm_depth"), "must be between 2 and 8"));
            }
        }
        for (i, m) in self.locals.iter().enumerate() {
            if m.slots == 0 || m.slots > 64 {
                return Err(invalid(format!("local[{i}].slots"), "must be between 1 and 64"));
            }
            if m.ctx_per_slot < 64 {
                return Err(invalid(format!("local[{i}].ctx_per_slot"), "must be at least 64"));
            }
            check_price(format!("local[{i}].input_per_mtok"), m.input_per_mtok)?;
            check_price(format!("local[{i}].output_per_mtok"), m.output_per_mtok)?;
            if let Some(c) = m.cached_input_per_mtok {
                check_price(format!("local[{i}].cached_input_per_mtok"), c)?;
            }
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            if let Err(why) = parse_http_url(&u.base_url) {
                return Err(invalid(format!("upstream[{i}].base_url"), why));
            }
            check_price(format!("upstream[{i}].input_per_mtok"), u.input_per_mtok)?;
            check_price(format!("upstream[{i}].output_per_mtok"), u.output_per_mtok)?;
            if let Some(c) = u.cached_input_per_mtok {
                check_price(format!("upstream[{i}].cached_input_per_mtok"), c)?;
            }
            if !(0.0..=1.0).contains(&u.tier) {
                return Err(invalid(format!("upstream[{i}].tier"), "must be between 0 and 1"));
            }
            // A zero timeout fails every request.
            for (field, v) in [
                ("connect_timeout_ms", u.connect_timeout_ms),
                ("first_token_timeout_ms", u.first_token_timeout_ms),
                ("total_timeout_ms", u.total_timeout_ms),
            ] {
                if v == 0 {
                    return Err(invalid(format!("upstream[{i}].{field}"), "must be more than 0"));
                }
            }
            if u.max_retries > 10 {
                return Err(invalid(format!("upstream[{i}].max_retries"), "must be at most 10"));
            }
            if let Some(var) = &u.api_key_env {
                // A pasted key instead of a variable name would also end up in the warnings; never echo it.
                let is_name = var.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !is_name {
                    return Err(invalid(
                        format!("upstream[{i}].api_key_env"),
                        "must name an environment variable that holds the key (e.g. OPENAI_API_KEY), not the key",
                    ));
                }
            }
            for (j, f) in u.fallback.iter().enumerate() {
                if !self.upstreams.iter().any(|o| &o.name == f) && !self.locals.iter().any(|o| &o.name == f) {
                    return Err(invalid(format!("upstream[{i}].fallback"), format!("unknown model `{f}`")));
                }
                // Fallbacks are one level: the model's own list, in order. Itself or a repeat would only
                // retry a failing model.
                if f == &u.name || u.fallback[..j].contains(f) {
                    return Err(invalid(
                        format!("upstream[{i}].fallback"),
                        format!("`{f}` is the model itself or listed twice"),
                    ));
                }
            }
        }
        for (j, c) in self.route.candidates.iter().enumerate() {
            if !self.upstreams.iter().any(|o| &o.name == c) && !self.locals.iter().any(|o| &o.name == c) {
                return Err(invalid("route.candidates", format!("unknown chat model `{c}`")));
            }
            if self.route.candidates[..j].contains(c) {
                return Err(invalid("route.candidates", format!("`{c}` is listed twice")));
            }
        }
        // The difficulty scorer runs on the encoder: without one, these would be ignored.
        if self.embedding.is_none() {
            if self.route.router_dir.is_some() {
                return Err(invalid("route.router_dir", "the difficulty scorer needs an [embedding] model"));
            }
            if self.route.strong_share.is_some() {
                return Err(invalid("route.strong_share", "the difficulty scorer needs an [embedding] model"));
            }
        }
        if let Some(s) = self.route.strong_share {
            if !(0.0..=1.0).contains(&s) {
                return Err(invalid("route.strong_share", "must be between 0 and 1"));
            }
        }
        if let Some(t) = self.route.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(invalid("route.threshold", "must be between 0 and 1"));
            }
        }
        if !(0.0..=1.0).contains(&self.route.min_confidence) {
            return Err(invalid("route.min_confidence", "must be between 0 and 1"));
        }
        for (field, v) in
            [("route.max_cost_usd", self.route.max_cost_usd), ("route.max_latency_ms", self.route.max_latency_ms)]
        {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(invalid(field, "must be a positive number"));
            }
        }
        let mut key_names = HashSet::new();
        let mut key_hashes = HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            if k.sha256.len() != 64 || !k.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(format!("key[{i}].sha256"), "must be 64 hex digits (sha256 of the key)"));
            }
            // An empty bearer token would match it: a key anyone can send.
            if k.sha256.eq_ignore_ascii_case(&crate::auth::hash_key("")) {
                return Err(invalid(
                    format!("key[{i}].sha256"),
                    format!(
                        "key `{}` has the hash of an empty key; hash a real key with `rightmodel serve --hash-key KEY`",
                        k.name
                    ),
                ));
            }
            for m in &k.models {
                let known = m == "auto" || m.starts_with("docs:") || names.contains(m);
                if !known {
                    return Err(invalid(format!("key[{i}].models"), format!("unknown model `{m}`")));
                }
            }
            if !key_names.insert(&k.name) {
                return Err(invalid(format!("key[{i}].name"), format!("key name `{}` is used twice", k.name)));
            }
            // Hashes are compared lower-cased: two entries for one key would silently drop one's limits.
            if !key_hashes.insert(k.sha256.to_ascii_lowercase()) {
                return Err(invalid(
                    format!("key[{i}].sha256"),
                    format!("key `{}` repeats another key's hash", k.name),
                ));
            }
        }
        if !(self.budget.daily_usd.is_finite() && self.budget.daily_usd >= 0.0) {
            return Err(invalid("budget.daily_usd", "must be a number, not negative"));
        }
        for (i, k) in self.keys.iter().enumerate() {
            if !(k.daily_spend_usd.is_finite() && k.daily_spend_usd >= 0.0) {
                return Err(invalid(format!("key[{i}].daily_spend_usd"), "must be a number, not negative"));
            }
        }
        Ok(())
    }

    /// Names of all chat-capable models (local then upstream).
    pub fn chat_models(&self) -> Vec<String> {
        self.locals.iter().map(|m| m.name.clone()).chain(self.upstreams.iter().map(|u| u.name.clone())).collect()
    }

    /// Upstreams by name.
    pub fn upstream_map(&self) -> BTreeMap<String, UpstreamModel> {
        self.upstreams.iter().map(|u| (u.name.clone(), u.clone())).collect()
    }
}

/// Parses `url` as an API root: http or https, a host, a port that fits. Errors say why (not the URL,
/// which may carry credentials), for the caller to name the key or flag.
pub fn parse_http_url(url: &str) -> Result<reqwest::Url, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("is not a valid URL: it must start with http:// or https://".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("is not a valid URL: it names no host".into());
    }
    Ok(parsed)
}

/// Checks that `host` can be listened on the way `serve` binds it (`HOST:PORT`): an IP address (IPv6
/// bare or in brackets, with or without a zone) or a host name made of letters, digits, `-`, `_` and
/// dots, as resolvers take them. Says why not.
pub fn check_host(host: &str) -> Result<(), String> {
    // An IPv6 address may carry a zone (`fe80::1%eth0`), which the address parser does not take.
    let unzoned =
        |h: &str| h.split_once('%').map_or(h, |(addr, zone)| if zone.is_empty() { h } else { addr }).to_string();
    if host.parse::<std::net::IpAddr>().is_ok() || unzoned(host).parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match unzoned(inner).parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("`{host}`: only an IPv6 address goes in brackets")),
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok) {
        return Ok(());
    }
    Err(format!("`{host}` is neither an IP address nor a host name (e.g. 127.0.0.1, 0.0.0.0, ::1 or localhost)"))
}

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks, creating and changing nothing, that `serve` could open its request log at `path`: an
/// existing file must be a writable SQLite database whose `requests` table (when it has one) the
/// gateway can read; a missing one must be creatable. `Ok(Some(note))` when the log is usable but
/// `serve` will upgrade it at start. Errors say why, for the caller to name the path.
pub fn check_log_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err("is a folder; give a file for the request log".into()),
        Ok(_) => check_existing_log(path),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            check_log_folder(path).map(|()| None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Checks an existing request log without opening it for writing through SQLite (which would create
/// its journal files, or migrate it).
fn check_existing_log(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| format!("cannot be written: {e}"))?;
    let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
    file.by_ref().take(SQLITE_MAGIC.len() as u64).read_to_end(&mut head).map_err(|e| e.to_string())?;
    // SQLite makes an empty file a new database.
    if head.is_empty() {
        return Ok(None);
    }
    if head != SQLITE_MAGIC {
        return Err(
            "is not an SQLite database, so not a request log: move it away or set another server.log_path".into()
        );
    }
    let columns = log_columns(path)?;
    if columns.is_empty() {
        return Ok(None);
    }
    let missing: Vec<&str> =
        crate::reqlog::BASE_COLUMNS.iter().copied().filter(|c| !columns.iter().any(|have| have == c)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "holds a `requests` table that is not a request log of this version (it lacks {}): move it away or set another server.log_path",
            missing.join(", ")
        ));
    }
    if !columns.iter().any(|c| c == "cached_tokens") {
        return Ok(Some("was written by an older version; `serve` adds the `cached_tokens` column at start".into()));
    }
    Ok(None)
}

/// The column names of the `requests` table in the SQLite file at `path` (none when there is no such
/// table), read without creating anything: a log in WAL mode opened read-only would get `-wal` and
/// `-shm` files, so unless a server has them open already the file is read as immutable.
pub(crate) fn log_columns(path: &Path) -> Result<Vec<String>, String> {
    use rusqlite::OpenFlags;
    let side = |ext: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p).exists()
    };
    let conn = if side("-wal") && side("-shm") {
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(path));
        rusqlite::Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
    }
    .map_err(|e| format!("cannot be opened: {e}"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| format!("cannot be opened: {e}"))?;
    conn.prepare("SELECT name FROM pragma_table_info('requests')")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| format!("cannot be read as a request log: {e}"))
}

/// Whether the file at `path` starts with the SQLite header (read with a plain read-only open).
pub(crate) fn has_sqlite_header(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(SQLITE_MAGIC.len());
    std::fs::File::open(path)?.take(SQLITE_MAGIC.len() as u64).read_to_end(&mut head)?;
    Ok(head == SQLITE_MAGIC)
}

/// `path` for a `file:` URI: the characters a URI gives meaning to are percent-encoded.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Checks that a request log could be created at `path`: its nearest existing ancestor is a folder
/// where files can be created (probed with a file removed at once; no folder is created).
fn check_log_folder(path: &Path) -> Result<(), String> {
    let mut at = path.parent();
    while let Some(dir) = at {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                let probe = dir.join(format!(".rightmodel-log-check-{}", std::process::id()));
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&probe)
                    .map_err(|e| format!("cannot be created: no file can be made in {}: {e}", dir.display()))?;
                let _ = std::fs::remove_file(&probe);
                return Ok(());
            }
            Ok(_) => return Err(format!("cannot be created: {} is a file, not a folder", dir.display())),
            // `.` has no parent to look at (its own parent is empty, which would be `.` again).
            Err(_) => at = if dir == Path::new(".") { None } else { dir.parent() },
        }
    }
    Err("cannot be created: no existing folder above it".into())
}

/// Makes a model spec from a config file mean the same whatever folder the server starts in: a leading
/// `~/` becomes `home` (HOME), and a relative path is joined to the config's folder `base` when it looks
/// like a path (`models/x.gguf`, `./enc`) or names something that exists there (`my-encoder`, `x.GGUF`),
/// since the model resolvers accept any existing file or folder. A catalog model's name stays a name, as
/// the resolvers read it as one.
fn fix_spec(spec: &mut String, base: &Path, home: Option<&Path>) {
    if let Some(expanded) = expand_home(spec, home) {
        *spec = expanded;
    }
    let is_catalog_name = !rightmodel_models::looks_like_path(spec) && rightmodel_models::catalog::find(spec).is_some();
    let path = Path::new(spec.as_str());
    if is_catalog_name || !path.is_relative() {
        return;
    }
    let rebased = base.join(path);
    if rightmodel_models::looks_like_path(spec) || rebased.exists() {
        *spec = rebased.to_string_lossy().into_owned();
    }
}

/// `spec` with a leading `~/` replaced by `home`; None when it has none or HOME is unknown.
fn expand_home(spec: &str, home: Option<&Path>) -> Option<String> {
    let rest = spec.strip_prefix("~/")?;
    Some(home?.join(rest).to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs_that_exist_next_to_the_config_are_rebased() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir(base.join("my-encoder")).unwrap();
        std::fs::write(base.join("x.GGUF"), b"GGUF").unwrap();
        std::fs::create_dir(base.join("gemma3-270m")).unwrap();
        let fixed = |spec: &str| {
            let mut s = spec.to_string();
            super::fix_spec(&mut s, base, Some(std::path::Path::new("/home/u")));
            s
        };
        assert_eq!(fixed("my-encoder"), base.join("my-encoder").to_string_lossy());
        assert_eq!(fixed("x.GGUF"), base.join("x.GGUF").to_string_lossy());
        assert_eq!(fixed("models/y.gguf"), base.join("models/y.gguf").to_string_lossy());
        // A catalog name stays a name even when a folder of that name sits next to the config.
        assert_eq!(fixed("gemma3-270m"), "gemma3-270m");
        // Neither a path nor present: left for the resolver to report.
        assert_eq!(fixed("not-here"), "not-here");
        assert_eq!(fixed("~/models/z.gguf"), "/home/u/models/z.gguf");
        assert_eq!(fixed("/abs/m.gguf"), "/abs/m.gguf");
        let mut no_home = "~/m.gguf".to_string();
        super::fix_spec(&mut no_home, base, None);
        assert_eq!(no_home, base.join("~/m.gguf").to_string_lossy(), "without HOME it is a plain relative path");
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gw.toml");
        std::fs::write(&file, "[server]\nlog_path = \"state/rm.db\"\n").unwrap();
        let cfg = super::Config::load(&file).unwrap();
        assert_eq!(cfg.server.log_path.unwrap(), dir.path().join("state/rm.db"));
        std::fs::write(
            &file,
            "[[local]]\nname = 'a'\nmodel = 'models/x.gguf'\n[[local]]\nname = 'b'\nmodel = 'gemma3-270m'\n[embedding]\nname = 'e'\nmodel = './enc'\n",
        )
        .unwrap();
        let cfg = super::Config::load(&file).unwrap();
        assert_eq!(std::path::PathBuf::from(&cfg.locals[0].model), dir.path().join("models/x.gguf"));
        assert_eq!(cfg.locals[1].model, "gemma3-270m");
        assert_eq!(std::path::PathBuf::from(&cfg.embedding.unwrap().model), dir.path().join("./enc"));
    }

    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../rightmodel.example.toml");
        Config::parse(text, "example").unwrap();
    }

    #[test]
    fn unknown_key_names_line() {
        let e = Config::parse("[server]\nprot = 1\n", "x").unwrap_err().to_string();
        assert!(e.contains("prot") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn bad_fallback_is_named() {
        let t = "[[upstream]]\nname='a'\nbase_url='http://x/v1'\nfallback=['zzz']\n";
        let e = Config::parse(t, "x").unwrap_err().to_string();
        assert!(e.contains("fallback") && e.contains("zzz"), "{e}");
    }

    #[test]
    fn numbers_that_would_poison_costs_or_routing_are_refused() {
        for (t, key) in [
            ("[[upstream]]\nname='a'\nbase_url='http://x/v1'\noutput_per_mtok=nan\n", "upstream[0].output_per_mtok"),
            ("[[local]]\nname='l'\nmodel='m'\ninput_per_mtok=inf\n", "local[0].input_per_mtok"),
            (
                "[[upstream]]\nname='a'\nbase_url='http://x/v1'\ncached_input_per_mtok=-1\n",
                "upstream[0].cached_input_per_mtok",
            ),
            ("[route]\nmax_cost_usd=0\n", "route.max_cost_usd"),
            ("[server]\nmax_connections=0\n", "server.max_connections"),
            ("[server]\nheader_read_timeout_secs=0\n", "server.header_read_timeout_secs"),
            ("[route]\nthreshold=1.5\n", "route.threshold"),
            ("[budget]\ndaily_usd=nan\n", "budget.daily_usd"),
            ("[[docs]]\nname='h'\nrerank_lm='nope'\n", "docs[0].rerank_lm"),
            ("[[docs]]\nname='h'\nread_lm='nope'\n", "docs[0].read_lm"),
            (
                "[[local]]\nname='l'\nmodel='m'\n[[local]]\nname='k'\nmodel='m'\n[[docs]]\nname='h'\nrerank_lm='l'\nread_lm='k'\n",
                "docs[0].read_lm",
            ),
            (
                "[[local]]\nname='l'\nmodel='m'\n[[docs]]\nname='h'\nrerank_lm='l'\nrerank_lm_depth=9\n",
                "docs[0].rerank_lm_depth",
            ),
        ] {
            let e = Config::parse(t, "x").unwrap_err().to_string();
            assert!(e.contains(key), "{t:?}: {e}");
        }
    }

    #[test]
    fn mistakes_that_would_only_show_on_requests_are_refused() {
        let up = "[[upstream]]\nname='a'\nbase_url='http://x/v1'\n";
        for (t, key, says) in [
            (format!("{up}fallback=['a']\n"), "upstream[0].fallback", "itself"),
            (
                format!("{up}[[upstream]]\nname='b'\nbase_url='http://x/v1'\nfallback=['a','a']\n"),
                "upstream[1].fallback",
                "twice",
            ),
            (format!("{up}api_key_env='sk-live-123'\n"), "upstream[0].api_key_env", "not the key"),
            (format!("{up}[route]\ncandidates=['a','a']\n"), "route.candidates", "twice"),
            (format!("{up}[route]\nstrong_share=0.2\n"), "route.strong_share", "[embedding]"),
            (
                format!("{up}[[key]]\nname='k'\nsha256='{}'\nmodels=['gpt4o']\n", "a".repeat(64)),
                "key[0].models",
                "gpt4o",
            ),
            (format!("{up}[[upstream]]\nname='a'\nbase_url='http://y/v1'\n"), "upstream[1].name", "twice"),
            ("[[classifier]]\nname='../x'\n".to_string(), "classifier[0].name", "../x"),
        ] {
            let e = Config::parse(&t, "x").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(says), "{t:?}: {e}");
            assert!(!e.contains("sk-live-123"), "the pasted key is not echoed: {e}");
        }
        let ok = format!("{up}[[key]]\nname='k'\nsha256='{}'\nmodels=['a', 'auto', 'docs:handbook']\n", "b".repeat(64));
        Config::parse(&ok, "x").unwrap();
    }

    #[test]
    fn upstream_urls_that_only_fail_per_request_are_refused_at_load() {
        for (url, says) in [
            ("http://", "host"),
            ("http://exa mple.com/v1", "domain"),
            ("https://api.openai.com:99999/v1", "port"),
            ("ftp://x/v1", "http://"),
        ] {
            let t = format!("[[upstream]]\nname='a'\nbase_url='{url}'\n");
            let e = Config::parse(&t, "x").unwrap_err().to_string();
            assert!(e.contains("upstream[0].base_url") && e.contains(says), "{url}: {e}");
        }
        for url in ["http://127.0.0.1:8081/v1", "https://r.openai.azure.com/openai/v1?api-version=2024-10-21"] {
            Config::parse(&format!("[[upstream]]\nname='a'\nbase_url='{url}'\n"), "x").unwrap();
        }
        assert!(parse_http_url("notaurl").unwrap_err().contains("http://"));
    }

    #[test]
    fn hosts_that_cannot_be_bound_are_refused() {
        for host in ["not a host", "[127.0.0.1]", "-x", "", "a..b", "host:80"] {
            let e = Config::parse(&format!("[server]\nhost = '{host}'\n"), "x").unwrap_err().to_string();
            assert!(e.contains("server.host"), "{host:?}: {e}");
        }
        for host in [
            "127.0.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "[::1]",
            "localhost",
            "gw-1.internal.example.com.",
            "fe80::1%eth0",
            "[fe80::1%eth0]",
            "my_host",
        ] {
            check_host(host).unwrap();
        }
    }

    #[test]
    fn a_key_that_hashes_the_empty_string_is_refused() {
        let empty = crate::auth::hash_key("");
        for h in [empty.clone(), empty.to_ascii_uppercase()] {
            let e = Config::parse(&format!("[[key]]\nname='k'\nsha256='{h}'\n"), "x").unwrap_err().to_string();
            assert!(e.contains("key[0].sha256") && e.contains("empty key"), "{e}");
        }
    }

    #[test]
    fn request_logs_serve_could_not_open_are_found_without_touching_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let listing = || {
            let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
            v.sort();
            v
        };
        assert_eq!(check_log_file(&d.join("new.db")), Ok(None));
        assert_eq!(check_log_file(&d.join("state/deeper/new.db")), Ok(None));
        assert!(!d.join("state").exists(), "the check creates no folder");
        std::fs::write(d.join("notes.txt"), "not a database").unwrap();
        let e = check_log_file(&d.join("notes.txt")).unwrap_err();
        assert!(e.contains("not an SQLite database"), "{e}");
        let e = check_log_file(&d.join("notes.txt/rm.db")).unwrap_err();
        assert!(e.contains("is a file, not a folder"), "{e}");
        assert!(check_log_file(d).unwrap_err().contains("folder"));
        // A log the gateway wrote is fine, and checking it leaves no journal files behind.
        let log = d.join("rm.db");
        drop(crate::reqlog::RequestLog::open(&log).unwrap());
        let before = listing();
        assert_eq!(check_log_file(&log), Ok(None));
        assert_eq!(listing(), before);
        // An older log lacks the newest column: usable, upgraded at start.
        let old = d.join("old.db");
        let conn = rusqlite::Connection::open(&old).unwrap();
        conn.execute_batch(
            "CREATE TABLE requests (id TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, key_name TEXT, endpoint TEXT NOT NULL,
             requested_model TEXT NOT NULL, served_model TEXT NOT NULL, reason TEXT, decision TEXT,
             input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
             latency_ms REAL NOT NULL, ttft_ms REAL, status INTEGER NOT NULL, error TEXT, stream INTEGER NOT NULL)",
        )
        .unwrap();
        drop(conn);
        assert!(check_log_file(&old).unwrap().unwrap().contains("older version"));
        // Another program's `requests` table is not a request log.
        let other = d.join("other.db");
        let conn = rusqlite::Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE requests (url TEXT)").unwrap();
        drop(conn);
        let e = check_log_file(&other).unwrap_err();
        assert!(e.contains("not a request log") && e.contains("ts_ms"), "{e}");
        // Characters a URI would read otherwise are kept in the file name.
        let odd = d.join("a?b#c%d.db");
        drop(crate::reqlog::RequestLog::open(&odd).unwrap());
        let before = listing();
        assert_eq!(check_log_file(&odd), Ok(None));
        assert_eq!(listing(), before);
        // While a server has the log open (its -wal and -shm exist) it is read through them.
        let live = crate::reqlog::RequestLog::open(&log).unwrap();
        assert_eq!(check_log_file(&log), Ok(None));
        drop(live);
        if Path::new("/proc/self").is_dir() {
            assert!(check_log_file(Path::new("/proc/nope/rm.db")).unwrap_err().contains("cannot be created"));
        }
    }
}
