//! The BERT encoder forward pass behind sentence embeddings, and the pieces fine-tuning shares with it.
//!
//! Written here instead of using `candle_transformers::models::bert::BertModel` for speed on CPU:
//! that model applies GELU through candle's element-wise `gelu_erf`, which calls scalar `erf`/`exp`
//! from libm for every activation, about a sixth of MiniLM's time on 2 cores. This one computes GELU
//! with a vectorisable `erf` ([`gelu_erf`]), runs the query/key/value projections as one matmul, and
//! uses candle-nn's fused layer norm and softmax. Parameter names are Hugging Face BERT's, so the same
//! safetensors (and fine-tuned task models) load here and in candle's model; a test checks both agree.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{embedding, Embedding, LayerNorm, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

/// The encoder: embeddings, then `num_hidden_layers` transformer layers; returns the last states.
pub struct BertEncoder {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    out_norm: LayerNorm,
}

fn layer_norm(vb: VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    let (w, b) = match (vb.get(size, "weight"), vb.get(size, "bias")) {
        (Ok(w), Ok(b)) => (w, b),
        _ => (vb.get(size, "gamma")?, vb.get(size, "beta")?),
    };
    Ok(LayerNorm::new(w, b, eps))
}

fn linear(vb: VarBuilder, inp: usize, out: usize) -> Result<Dense> {
    Ok(Dense { weight: vb.get((out, inp), "weight")?, bias: vb.get(out, "bias")? })
}

/// Token rows under which a dense layer multiplies `W · xᵀ` instead of `x · Wᵀ`.
///
/// The AVX-512 matmul kernel works on tiles of 64 rows by 6 columns: a short input (one sentence is
/// ~10 token rows) as the row side wastes most of each tile, while as the column side it fills them.
const FEW_ROWS: usize = 48;

/// A dense layer `y = x Wᵀ + b` over the last dimension, oriented for the matmul kernel.
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, i) = x.dims3()?;
        let out = self.weight.dim(0)?;
        let rows = x.reshape((b * s, i))?;
        let y = if b * s < FEW_ROWS {
            self.weight.matmul(&rows.t()?)?.t()?.contiguous()?
        } else {
            rows.matmul(&self.weight.t()?)?
        };
        y.broadcast_add(&self.bias)?.reshape((b, s, out))
    }
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let a = vb.pp("attention");
        let s = a.pp("self");
        // One [3h, h] projection instead of three [h, h] ones: fewer, larger matmuls.
        let (q, k, v) = (s.pp("query"), s.pp("key"), s.pp("value"));
        let w = Tensor::cat(&[q.get((h, h), "weight")?, k.get((h, h), "weight")?, v.get((h, h), "weight")?], 0)?;
        let b = Tensor::cat(&[q.get(h, "bias")?, k.get(h, "bias")?, v.get(h, "bias")?], 0)?;
        Ok(Layer {
            qkv: Dense { weight: w, bias: b },
            attn_out: linear(a.pp("output").pp("dense"), h, h)?,
            attn_norm: layer_norm(a.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
            intermediate: linear(vb.pp("intermediate").pp("dense"), h, i)?,
            output: linear(vb.pp("output").pp("dense"), i, h)?,
            out_norm: layer_norm(vb.pp("output").pp("LayerNorm"), h, c.layer_norm_eps)?,
        })
    }

    /// `x` [b, s, h]; `mask_add` [b, 1, 1, s] (0 for tokens, large negative for padding).
    fn forward(&self, x: &Tensor, mask_add: &Tensor, heads: usize, act: HiddenAct) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let d = h / heads;
        let qkv = self.qkv.forward(x)?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(D::Minus1, i * h, h)?.reshape((b, s, heads, d))?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?.broadcast_add(mask_add)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, s, h))?;
        let a = self.attn_norm.forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let i = self.intermediate.forward(&a)?;
        let i = match act {
            HiddenAct::Gelu => gelu(&i)?,
            HiddenAct::GeluApproximate => i.gelu()?,
            HiddenAct::Relu => i.relu()?,
        };
        self.out_norm.forward(&(self.output.forward(&i)? + a)?)
    }
}

impl BertEncoder {
    /// Loads the encoder from `vb` (tensor names with or without a `bert.` prefix).
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i.to_string()), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(BertEncoder {
            word: embedding(c.vocab_size, c.hidden_size, e.pp("word_embeddings"))?,
            position: embedding(c.max_position_embeddings, c.hidden_size, e.pp("position_embeddings"))?,
            token_type: embedding(c.type_vocab_size, c.hidden_size, e.pp("token_type_embeddings"))?,
            emb_norm: layer_norm(e.pp("LayerNorm"), c.hidden_size, c.layer_norm_eps)?,
            layers,
            heads: c.num_attention_heads,
            act: c.hidden_act,
        })
    }

    /// Token states `[b, s, h]` of `ids` `[b, s]` (u32) with attention `mask` `[b, s]` (u32, 1 = token).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mut x = self.emb_norm.forward(&embed_inputs(&self.word, &self.position, &self.token_type, ids)?)?;
        let bias = attention_bias(mask)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, self.heads, self.act)?;
        }
        Ok(x)
    }
}

/// Word + position + token-type (type 0) embeddings of `ids` `[b, s]`, before the layer norm.
pub fn embed_inputs(word: &Embedding, position: &Embedding, token_type: &Embedding, ids: &Tensor) -> Result<Tensor> {
    let (_, s) = ids.dims2()?;
    let positions = Tensor::arange(0u32, s as u32, ids.device())?;
    word.forward(ids)?
        .broadcast_add(&position.forward(&positions)?)?
        .broadcast_add(&token_type.forward(&Tensor::zeros(1, DType::U32, ids.device())?)?)
}

/// Additive attention bias `[b, 1, 1, s]` from a u32 mask `[b, s]`: 0 for tokens, -10,000 for padding.
pub fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?;
    ((m.ones_like()? - m)? * -10_000.0)?.unsqueeze(1)?.unsqueeze(1)
}

/// GELU in its exact (erf) form over an f32 CPU tensor, differentiable (for fine-tuning), computed
/// with [`gelu_erf`] instead of candle's scalar libm path.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1(GeluErf)
}

/// The candle op behind [`gelu`].
struct GeluErf;

/// Its derivative, `Φ(x) + x·φ(x)`, for the backward pass.
struct GeluErfGrad;

/// Applies `f` to every element of a contiguous f32 CPU tensor.
fn map_f32(storage: &CpuStorage, layout: &Layout, op: &str, f: impl Fn(f32) -> f32) -> Result<(CpuStorage, Shape)> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected an f32 tensor");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: expected a contiguous tensor");
    };
    let out: Vec<f32> = data[start..end].iter().map(|&x| f(x)).collect();
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

impl CustomOp1 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "rightmodel-gelu-erf-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(storage, layout, self.name(), gelu_erf_grad)
    }
}

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "rightmodel-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(storage, layout, self.name(), gelu_erf)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let d = arg.contiguous()?.apply_op1_no_bwd(&GeluErfGrad)?;
        Ok(Some(grad_res.mul(&d)?))
    }
}

/// `x/2 · (1 + erf(x/√2))` without libm calls, so loops over it vectorise.
///
/// erf from Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7) with `exp_neg`; GELU's
/// absolute error stays under 1e-6 for |x| < 10 (test below).
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf(z) for any z, from the same approximation as [`gelu_erf`].
#[inline(always)]
fn erf(z: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let az = z.abs();
    let t = 1.0 / (1.0 + P * az);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * exp_neg(-az * az)).copysign(z)
}

/// d/dx of `x/2 · (1 + erf(x/√2))`: `Φ(x) + x·φ(x)`.
#[inline(always)]
pub fn gelu_erf_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp_neg(-0.5 * x * x)
}

/// e^x for x <= 0 (inputs below -87 give e^-87, about 1.6e-38: the scale factor must stay a normal
/// f32, and nothing downstream can tell that from the true value).
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_exact_form() {
        let mut worst = 0f64;
        let mut x = -10.0f64;
        while x <= 10.0 {
            let exact = 0.5 * x * (1.0 + candle_core::cpu::erf::erf_f64(x / std::f64::consts::SQRT_2));
            worst = worst.max((gelu_erf(x as f32) as f64 - exact).abs());
            x += 0.001;
        }
        assert!(worst < 1e-6, "largest GELU error {worst}");
    }

    #[test]
    fn gelu_gradient_matches_candle() {
        let xs: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) / 100.0).collect();
        let v = candle_core::Var::from_vec(xs, 2001, &candle_core::Device::Cpu).unwrap();
        let ours = gelu(v.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let theirs = v.as_tensor().gelu_erf().unwrap().sum_all().unwrap().backward().unwrap();
        let a = ours.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let b = theirs.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "gradients differ by up to {worst}");
    }

    #[test]
    fn exp_is_accurate_on_its_range() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let (got, want) = (exp_neg(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 4e-7 * want + 1e-38, "exp({x}) = {got}, want {want}");
        }
    }
}
