//! A differentiable BERT encoder for fine-tuning.
//!
//! While training it applies the checkpoint's dropout (`hidden_dropout_prob`) where Hugging Face BERT
//! does: after the embeddings, on the attention probabilities and on both sub-layer outputs. Without
//! it, a fine-tuned encoder memorises a large training set within the first epoch.
//!
//! Written by hand because `candle_transformers`' `BertModel` normalises with candle-nn's fused
//! LayerNorm kernel, which has no backward pass: gradients stop at the first LayerNorm and only a head on
//! top would learn. This copy uses the same parameter names (so the saved weights load into the inference
//! encoder unchanged) and only ops candle can differentiate.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{embedding, linear, Embedding, Linear, VarBuilder};
use candle_transformers::models::bert::Config;

/// LayerNorm from elementary ops (differentiable).
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Norm { weight: vb.get(size, "weight")?, bias: vb.get(size, "bias")?, eps })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(D::Minus1)? as f64;
        let centred = x.broadcast_sub(&(x.sum_keepdim(D::Minus1)? / n)?)?;
        let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / n)?;
        centred.broadcast_div(&(var + self.eps)?.sqrt()?)?.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    intermediate: Linear,
    output: Linear,
    out_norm: Norm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let a = vb.pp("attention");
        Ok(Layer {
            query: linear(h, h, a.pp("self").pp("query"))?,
            key: linear(h, h, a.pp("self").pp("key"))?,
            value: linear(h, h, a.pp("self").pp("value"))?,
            attn_out: linear(h, h, a.pp("output").pp("dense"))?,
            attn_norm: Norm::load(a.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            intermediate: linear(h, i, vb.pp("intermediate").pp("dense"))?,
            output: linear(i, h, vb.pp("output").pp("dense"))?,
            out_norm: Norm::load(vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
        })
    }

    /// `x` [b, s, h]; `mask_add` [b, 1, 1, s] (0 for tokens, large negative for padding); `drop` the
    /// dropout rate while training (0 at inference).
    fn forward(&self, x: &Tensor, mask_add: &Tensor, heads: usize, drop: f32) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let d = h / heads;
        let split = |t: Tensor| -> Result<Tensor> { t.reshape((b, s, heads, d))?.transpose(1, 2)?.contiguous() };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(mask_add)?;
        let probs = dropout(&candle_nn::ops::softmax(&scores, D::Minus1)?, drop)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, s, h))?;
        let a = self.attn_norm.forward(&(dropout(&self.attn_out.forward(&ctx)?, drop)? + x)?)?;
        let i = rightmodel_infer::bert::gelu(&self.intermediate.forward(&a)?)?;
        self.out_norm.forward(&(dropout(&self.output.forward(&i)?, drop)? + a)?)
    }
}

/// Inverted dropout at rate `p`; the identity when `p` is 0 (inference), without touching the tensor.
fn dropout(x: &Tensor, p: f32) -> Result<Tensor> {
    if p > 0.0 {
        candle_nn::ops::dropout(x, p)
    } else {
        Ok(x.clone())
    }
}

/// The encoder: embeddings and transformer layers, returning the last token states.
pub struct TrainableBert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    dropout: f32,
}

impl TrainableBert {
    /// Builds the encoder from `vb` (parameter names as in Hugging Face BERT checkpoints, no prefix).
    /// The word-embedding matrix comes from `frozen` instead: it is a third of the parameters, the dense
    /// gradient and AdamW update of its 30k rows cost more than they help on small data sets, and the
    /// inputs seen in fine-tuning touch few of its rows. Passing `vb` again trains it too.
    pub fn load(vb: VarBuilder, frozen: VarBuilder, c: &Config) -> Result<Self> {
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i.to_string()), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(TrainableBert {
            word: embedding(c.vocab_size, c.hidden_size, frozen.pp("embeddings").pp("word_embeddings"))?,
            position: embedding(c.max_position_embeddings, c.hidden_size, e.pp("position_embeddings"))?,
            token_type: embedding(c.type_vocab_size, c.hidden_size, e.pp("token_type_embeddings"))?,
            emb_norm: Norm::load(e.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            layers,
            heads: c.num_attention_heads,
            dropout: c.hidden_dropout_prob.clamp(0.0, 0.9) as f32,
        })
    }

    /// The same encoder with dropout rate `p` while training instead of the checkpoint's (clamped to
    /// [0, 0.9]; 0 turns it off).
    pub fn with_dropout(mut self, p: f32) -> Self {
        self.dropout = if p.is_finite() { p.clamp(0.0, 0.9) } else { self.dropout };
        self
    }

    /// The dropout rate applied while training.
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// Token states `[b, s, h]` of `ids` `[b, s]` (u32) with attention `mask` `[b, s]` (u32, 1 = token);
    /// `train` turns the checkpoint's dropout on.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        use rightmodel_infer::bert::{attention_bias, embed_inputs};
        let drop = if train { self.dropout } else { 0.0 };
        let embedded = self.emb_norm.forward(&embed_inputs(&self.word, &self.position, &self.token_type, ids)?)?;
        let mut x = dropout(&embedded, drop)?;
        let mask_add = attention_bias(mask)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask_add, self.heads, drop)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn tiny(dropout: f64) -> (VarMap, TrainableBert) {
        let config = Config {
            vocab_size: 20,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 16,
            hidden_dropout_prob: dropout,
            ..Config::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let bert = TrainableBert::load(vb.clone(), vb, &config).unwrap();
        // A VarMap starts LayerNorm scales at 0, which would zero every output: use 1, as checkpoints do.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.ends_with("LayerNorm.weight") {
                var.set(&Tensor::ones(var.dims(), DType::F32, &Device::Cpu).unwrap()).unwrap();
            }
        }
        (varmap, bert)
    }

    fn inputs() -> (Tensor, Tensor) {
        let ids = Tensor::new(&[[1u32, 5, 7, 2]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 1]], &Device::Cpu).unwrap();
        (ids, mask)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn the_checkpoints_dropout_applies_while_training_only() {
        let (_vars, bert) = tiny(0.1);
        let (ids, mask) = inputs();
        let eval1 = bert.forward(&ids, &mask, false).unwrap();
        let eval2 = bert.forward(&ids, &mask, false).unwrap();
        assert_eq!(max_diff(&eval1, &eval2), 0.0, "inference is deterministic");
        let train = bert.forward(&ids, &mask, true).unwrap();
        assert!(max_diff(&eval1, &train) > 1e-4, "training drops units");
        // A checkpoint without dropout trains deterministically.
        let (_vars, plain) = tiny(0.0);
        let a = plain.forward(&ids, &mask, true).unwrap();
        let b = plain.forward(&ids, &mask, false).unwrap();
        assert_eq!(max_diff(&a, &b), 0.0);
    }

    #[test]
    fn a_chosen_dropout_rate_replaces_the_checkpoints() {
        let (ids, mask) = inputs();
        // Turned off: training is deterministic although the checkpoint declares 0.1.
        let (_vars, off) = tiny(0.1);
        let off = off.with_dropout(0.0);
        assert_eq!(off.dropout(), 0.0);
        let a = off.forward(&ids, &mask, true).unwrap();
        let b = off.forward(&ids, &mask, false).unwrap();
        assert_eq!(max_diff(&a, &b), 0.0);
        // Turned on for a checkpoint without dropout; out-of-range rates are clamped.
        let (_vars, on) = tiny(0.0);
        let on = on.with_dropout(0.3);
        let a = on.forward(&ids, &mask, true).unwrap();
        let b = on.forward(&ids, &mask, false).unwrap();
        assert!(max_diff(&a, &b) > 1e-4);
        assert_eq!(on.with_dropout(5.0).dropout(), 0.9);
    }
}
