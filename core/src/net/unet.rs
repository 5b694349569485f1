//! A U-Net for small images in the ADM / NCSN++ family (Dhariwal & Nichol 2021; Song et al. 2021, as used
//! by CM, iCT and EDM's `SongUNet`), sized for 16–32 px on CPUs.
//!
//! Input and output are flat `[B, C·H·W]` rows (channel-major, like `[B, C, H, W]` flattened), so the
//! losses and samplers are the same for images and 2D points. Per level: `res_blocks` residual blocks
//! (GroupNorm, SiLU, conv 3×3, adaptive group norm `(1 + scale) · norm(h) + shift` from the time
//! embedding, dropout, zero-initialised conv 3×3, skip scaled by `1/√2` as in NCSN++), self-attention at the
//! resolutions listed in `attention`, stride-2 conv down, nearest ×2 + conv up, skip connections from every
//! encoder block to the decoder. The output conv starts at zero, so `F = 0` at initialisation.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::TimeEmbedding;
use super::mlp::DropoutMasks;
use crate::jvp::{Dual, cat, conv2d, embed, group_norm_act, linear, matmul, pixel_norm};

/// Architecture of [`UNet`]; saved in every model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Image channels `C` (1 grey, 3 colour).
    pub channels: usize,
    /// Image height and width `H = W`; must be divisible by `2^(levels - 1)`.
    pub resolution: usize,
    /// Base width (channels at the first level).
    pub base: usize,
    /// Width multiplier per level; its length is the number of levels.
    pub mult: Vec<usize>,
    /// Residual blocks per level in the encoder (the decoder has one more).
    pub res_blocks: usize,
    /// Resolutions (in pixels) at which blocks are followed by self-attention.
    #[serde(default)]
    pub attention: Vec<usize>,
    /// Groups of every GroupNorm; every width must be divisible by it.
    #[serde(default = "UNetConfig::default_groups")]
    pub groups: usize,
    /// Size of the time-embedding vector (even); the MLP after it is `4 · base` wide.
    pub emb_dim: usize,
    /// How `c_noise` is embedded.
    pub embedding: TimeEmbedding,
    /// Dropout rate inside each residual block (iCT: shared by student and target passes).
    #[serde(default)]
    pub dropout: f64,
    /// How the time embedding modulates each block's second norm: `group` (ADM's adaptive group norm)
    /// or `double` (sCM's adaptive double normalisation).
    #[serde(default)]
    pub ada_norm: AdaNorm,
    /// Class labels the network is conditioned on (0: unconditional). A label enters as a one-hot row
    /// scaled by `sqrt(classes)` through a linear map added to the noise embedding (`map_label` of EDM's ADM network, bias-free);
    /// an all-zero row asks for no class.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub classes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The most classes a conditional network may have (ImageNet's 1000, with room).
pub const MAX_CLASSES: usize = 4096;

/// Adaptive normalisation of a residual block by the time embedding, `(scale, shift) = W temb`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdaNorm {
    /// `GroupNorm(h) (1 + scale) + shift` (ADM, CM, iCT).
    #[default]
    Group,
    /// `GroupNorm(h) pnorm(scale) + pnorm(shift)` with pixel norm over channels: sCM §4.1's adaptive double
    /// normalisation, which keeps the time conditioning's scale fixed so `dF/dt` stays well conditioned.
    Double,
}

impl UNetConfig {
    fn default_groups() -> usize {
        8
    }

    /// Data dimension `D = C·H·W`.
    pub fn dim(&self) -> usize {
        self.channels * self.resolution * self.resolution
    }

    /// Checks sizes before any tensor is made.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4).contains(&self.channels) {
            return Err(format!("channels must be 1 to 4, got {}", self.channels));
        }
        if self.mult.is_empty() || self.mult.len() > 6 || self.mult.contains(&0) {
            return Err(format!("mult needs 1 to 6 positive entries, got {:?}", self.mult));
        }
        let down = 1usize << (self.mult.len() - 1);
        if self.resolution == 0 || self.resolution > 256 || !self.resolution.is_multiple_of(down) {
            return Err(format!(
                "resolution must be 1..=256 and divisible by 2^(levels - 1) = {down}, got {}",
                self.resolution
            ));
        }
        if self.base == 0
            || self.base.saturating_mul(*self.mult.iter().max().unwrap_or(&1)) > 2048
            || self.res_blocks > 8
        {
            return Err(format!(
                "need 0 < base · max(mult) <= 2048 and res_blocks <= 8, got base = {}, mult = {:?}, res_blocks = {}",
                self.base, self.mult, self.res_blocks
            ));
        }
        // Every GroupNorm's width, the decoder's concatenated inputs included.
        let bad = self.plan().into_iter().find_map(|s| match s {
            Layer::Block { cin, cout, .. } => {
                [cin, cout].into_iter().find(|c| self.groups == 0 || !c.is_multiple_of(self.groups))
            }
            _ => None,
        });
        if let Some(width) = bad {
            return Err(format!(
                "groups must divide every GroupNorm's width, but {width} is not divisible by groups = {} \
                 (base = {}, mult = {:?})",
                self.groups, self.base, self.mult
            ));
        }
        if self.emb_dim < 2 || !self.emb_dim.is_multiple_of(2) || self.emb_dim > 4096 {
            return Err(format!("emb_dim must be even and in 2..=4096, got {}", self.emb_dim));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.classes > MAX_CLASSES {
            return Err(format!("classes must be at most {MAX_CLASSES}, got {}", self.classes));
        }
        let levels: Vec<usize> = (0..self.mult.len()).map(|i| self.resolution >> i).collect();
        if let Some(res) = self.attention.iter().find(|r| !levels.contains(r)) {
            return Err(format!(
                "attention at {res} px matches no level of this network (its levels are {levels:?} px)"
            ));
        }
        self.embedding.validate()
    }

    /// The network's stages in build order: encoder, the two middle blocks (the first with
    /// attention), decoder. `init`, the size checks and the parameter count all read this one list.
    fn plan(&self) -> Vec<Layer> {
        let levels = self.mult.len();
        let mut widths = vec![self.base]; // widths of the skip activations, in push order
        let mut plan = Vec::new();
        let mut cin = self.base;
        let mut res = self.resolution;
        let at = |res: usize| self.attention.contains(&res);
        for (l, m) in self.mult.iter().enumerate() {
            let cout = self.base * m;
            for _ in 0..self.res_blocks {
                plan.push(Layer::Block { cin, cout, res, attention: at(res) });
                cin = cout;
                widths.push(cin);
            }
            if l + 1 < levels {
                plan.push(Layer::Down(cin));
                res /= 2;
                widths.push(cin);
            }
        }
        plan.push(Layer::Block { cin, cout: cin, res, attention: true });
        plan.push(Layer::Block { cin, cout: cin, res, attention: false });
        for (l, m) in self.mult.iter().enumerate().rev() {
            let cout = self.base * m;
            for _ in 0..=self.res_blocks {
                let skip = widths.pop().expect("one skip per encoder stage");
                plan.push(Layer::Block { cin: cin + skip, cout, res, attention: at(res) });
                cin = cout;
            }
            if l > 0 {
                plan.push(Layer::Up(cin));
                res *= 2;
            }
        }
        plan
    }

    /// Trainable parameters (every tensor of `init`), without building anything.
    pub fn parameters(&self) -> u64 {
        let (c, temb, e) = (self.channels as u64, 4 * self.base as u64, self.emb_dim as u64);
        let conv3 = |i: u64, o: u64| 9 * i * o + o;
        let lin = |i: u64, o: u64| i * o + o;
        let stages: u64 = (self.plan().into_iter())
            .map(|s| match s {
                Layer::Block { cin, cout, attention, .. } => {
                    let (i, o) = (cin as u64, cout as u64);
                    let skip = if i != o { lin(i, o) } else { 0 };
                    let att = if attention { 2 * o + lin(o, 3 * o) + lin(o, o) } else { 0 };
                    2 * i + conv3(i, o) + lin(temb, 2 * o) + 2 * o + conv3(o, o) + skip + att
                }
                Layer::Down(w) | Layer::Up(w) => conv3(w as u64, w as u64),
            })
            .sum();
        // The input conv to `base`; the output norm and conv from the decoder's last width.
        let (base, last) = (self.base as u64, (self.base * self.mult[0]) as u64);
        let label = self.classes as u64 * e;
        label + lin(e, temb) + lin(temb, temb) + conv3(c, base) + stages + 2 * last + conv3(last, c)
    }

    /// Floats of activation one sample keeps for the backward pass, roughly (each block's inputs,
    /// normalised and convolved maps, and the `(HW)^2` attention weights): what a batch costs in memory.
    pub fn activations_per_sample(&self) -> u64 {
        (self.plan().into_iter())
            .map(|s| match s {
                Layer::Block { cin, cout, res, attention } => {
                    let px = (res * res) as u64;
                    let att = if attention { 5 * cout as u64 * px + px * px } else { 0 };
                    (2 * cin as u64 + 5 * cout as u64) * px + att
                }
                Layer::Down(_) | Layer::Up(_) => 0,
            })
            .sum()
    }

    /// Floats one row holds at the peak of a forward pass without autodiff (sampling), roughly: every
    /// skip activation the decoder will read, and the largest block's working set (its input, two
    /// convolutions' outputs and, with attention, query, key, value and the `HW × HW` weights before
    /// and after the softmax). Attention at a fine resolution dominates: `(H W)^2` per row.
    pub fn inference_floats_per_row(&self) -> u64 {
        let plan = self.plan();
        let encoder = self.mult.len() * (self.res_blocks + 1) - 1;
        let mut res = self.resolution as u64;
        let mut skips = self.base as u64 * res * res;
        for layer in &plan[..encoder] {
            skips += match *layer {
                Layer::Block { cout, .. } => cout as u64 * res * res,
                Layer::Down(w) => {
                    res /= 2;
                    w as u64 * res * res
                }
                Layer::Up(_) => 0,
            };
        }
        let working = (plan.iter())
            .map(|layer| match *layer {
                Layer::Block { cin, cout, res, attention } => {
                    let px = (res * res) as u64;
                    let att = if attention { 3 * cout as u64 * px + 2 * px * px } else { 0 };
                    (cin as u64 + 2 * cout as u64) * px + att
                }
                Layer::Down(_) | Layer::Up(_) => 0,
            })
            .max()
            .unwrap_or(0);
        skips + working
    }

    pub fn init(&self, device: &Device) -> UNet {
        let temb = 4 * self.base;
        let mut stages: Vec<Stage> = (self.plan().into_iter())
            .map(|layer| match layer {
                Layer::Block { cin, cout, attention, .. } => {
                    Stage::Block(ResBlock::new(cin, cout, temb, self.groups, device).with_attention(
                        attention,
                        self.groups,
                        device,
                    ))
                }
                Layer::Down(w) => Stage::Down(conv(w, w, 2, default_init(), device)),
                Layer::Up(w) => Stage::Up(conv(w, w, 1, default_init(), device)),
            })
            .collect();
        // Encoder: `res_blocks` blocks per level and a down-sampling conv between levels; then the middle.
        let encoder = self.mult.len() * (self.res_blocks + 1) - 1;
        let up = stages.split_off(encoder + 2);
        let (Some(Stage::Block(mid_2)), Some(Stage::Block(mid_1))) = (stages.pop(), stages.pop()) else {
            unreachable!("the plan puts two blocks after the encoder")
        };
        let down = stages;
        let cin = self.base * self.mult[0];
        UNet {
            label: (self.classes > 0)
                .then(|| LinearConfig::new(self.classes, self.emb_dim).with_bias(false).init(device)),
            time_1: LinearConfig::new(self.emb_dim, temb).init(device),
            time_2: LinearConfig::new(temb, temb).init(device),
            input: conv(self.channels, self.base, 1, default_init(), device),
            down,
            mid_1,
            mid_2,
            up,
            out_norm: GroupNormConfig::new(self.groups, cin).init(device),
            output: conv(cin, self.channels, 1, Initializer::Zeros, device),
            freqs: self.embedding.frequencies(self.emb_dim),
            dropout: self.dropout,
            ada_norm: self.ada_norm,
            shape: [self.channels, self.resolution, self.resolution],
        }
    }
}

/// One entry of [`UNetConfig::plan`]: a residual block `cin -> cout` at `res` pixels, or the 3×3 conv
/// of width `w` that halves (`Down`) or follows the doubling of (`Up`) the resolution.
#[derive(Clone, Copy, Debug)]
enum Layer {
    Block { cin: usize, cout: usize, res: usize, attention: bool },
    Down(usize),
    Up(usize),
}

fn default_init() -> Initializer {
    Initializer::KaimingUniform { gain: 1.0 / 3f64.sqrt(), fan_out_only: false }
}

/// 3×3 convolution with padding 1 and the given stride.
fn conv(cin: usize, cout: usize, stride: usize, init: Initializer, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_initializer(init)
        .init(device)
}

/// Residual block with adaptive group norm, optionally followed by self-attention.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm_1: GroupNorm,
    conv_1: Conv2d,
    /// Time embedding -> `[scale, shift]`, `2 · cout` wide.
    time: Linear,
    norm_2: GroupNorm,
    conv_2: Conv2d,
    /// 1×1 projection of the skip path when the width changes.
    skip: Option<Conv2d>,
    attention: Option<Attention>,
}

impl ResBlock {
    fn new(cin: usize, cout: usize, temb: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm_1: GroupNormConfig::new(groups, cin).init(device),
            conv_1: conv(cin, cout, 1, default_init(), device),
            time: LinearConfig::new(temb, 2 * cout).init(device),
            norm_2: GroupNormConfig::new(groups, cout).init(device),
            conv_2: conv(cout, cout, 1, Initializer::Zeros, device),
            skip: (cin != cout).then(|| Conv2dConfig::new([cin, cout], [1, 1]).init(device)),
            attention: None,
        }
    }

    fn with_attention(mut self, on: bool, groups: usize, device: &Device) -> Self {
        if on {
            let c = self.conv_1.weight.dims()[0];
            self.attention = Some(Attention {
                norm: GroupNormConfig::new(groups, c).init(device),
                qkv: Conv2dConfig::new([c, 3 * c], [1, 1]).init(device),
                proj: Conv2dConfig::new([c, c], [1, 1]).with_initializer(Initializer::Zeros).init(device),
            });
        }
        self
    }

    /// Output channels.
    fn width(&self) -> usize {
        self.conv_1.weight.dims()[0]
    }

    /// `x: [B, cin, H, W]`, `temb: [B, 4·base]`, `mask: [B, cout·H·W]` -> `[B, cout, H, W]`.
    fn forward(&self, x: Dual<4>, temb: Dual<2>, mask: Option<Tensor<2>>, ada: AdaNorm) -> Dual<4> {
        let [b, _, h, w] = x.v.dims();
        let c = self.width();
        let a = conv2d(&self.conv_1, group_norm_act(&self.norm_1, x.clone(), None, true));
        let st = linear(&self.time, temb.silu());
        let scale = st.clone().linear_map(|t| t.slice([0..b, 0..c]));
        let shift = st.linear_map(|t| t.slice([0..b, c..2 * c]));
        let (scale, shift) = match ada {
            AdaNorm::Group => (scale.add_scalar(1.0), shift),
            AdaNorm::Double => (pixel_norm(scale, 1e-8), pixel_norm(shift, 1e-8)),
        };
        let mut a = group_norm_act(&self.norm_2, a, Some((scale, shift)), true);
        if let Some(mask) = mask {
            a = a.mul_const(mask.reshape([b, c, h, w]));
        }
        let a = conv2d(&self.conv_2, a);
        let skip = match &self.skip {
            Some(p) => conv2d(p, x),
            None => x,
        };
        let y = (skip + a).mul_scalar(core::f64::consts::FRAC_1_SQRT_2);
        match &self.attention {
            Some(att) => att.forward(y),
            None => y,
        }
    }
}

/// Single-head self-attention over the `H·W` positions, residual, zero-initialised output projection.
#[derive(Module, Debug)]
pub struct Attention {
    norm: GroupNorm,
    qkv: Conv2d,
    proj: Conv2d,
}

impl Attention {
    /// `x: [B, C, H, W]` -> `[B, C, H, W]`.
    fn forward(&self, x: Dual<4>) -> Dual<4> {
        let [b, c, h, w] = x.v.dims();
        let qkv = conv2d(&self.qkv, group_norm_act(&self.norm, x.clone(), None, false))
            .linear_map(|t| t.reshape([b, 3 * c, h * w]));
        let q = qkv.clone().linear_map(|t| t.slice([0..b, 0..c]).swap_dims(1, 2)); // [B, HW, C]
        let k = qkv.clone().linear_map(|t| t.slice([0..b, c..2 * c])); // [B, C, HW]
        let v = qkv.linear_map(|t| t.slice([0..b, 2 * c..3 * c]).swap_dims(1, 2)); // [B, HW, C]
        let weights = matmul(q, k).mul_scalar(1.0 / (c as f64).sqrt()).softmax(2); // [B, HW, HW]
        let a = matmul(weights, v).linear_map(|t| t.swap_dims(1, 2).reshape([b, c, h, w]));
        (x + conv2d(&self.proj, a)).mul_scalar(core::f64::consts::FRAC_1_SQRT_2)
    }
}

/// One encoder or decoder stage.
// burn's Module derive needs the variants unboxed; a stage is built once, so the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Stage {
    Block(ResBlock),
    /// Stride-2 conv.
    Down(Conv2d),
    /// Nearest ×2 upsampling, then conv.
    Up(Conv2d),
}

/// `F(x, c_noise)` on images (`F(x, c_noise, label)` for a class-conditional network).
#[derive(Module, Debug)]
pub struct UNet {
    /// `map_label`: one-hot class rows to the noise embedding's width (conditional networks only).
    label: Option<Linear>,
    time_1: Linear,
    time_2: Linear,
    input: Conv2d,
    down: Vec<Stage>,
    mid_1: ResBlock,
    mid_2: ResBlock,
    up: Vec<Stage>,
    out_norm: GroupNorm,
    output: Conv2d,
    #[module(skip)]
    freqs: Vec<f32>,
    #[module(skip)]
    dropout: f64,
    #[module(skip)]
    ada_norm: AdaNorm,
    /// `[C, H, W]`.
    #[module(skip)]
    shape: [usize; 3],
}

/// Nearest-neighbour ×2 upsampling `[B, C, H, W]` -> `[B, C, 2H, 2W]`.
fn upsample(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
}

impl UNet {
    /// Dropout rate the network was built with.
    pub fn dropout(&self) -> f64 {
        self.dropout
    }

    /// `[C, H, W]`.
    pub fn image_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Data dimension `D = C·H·W`.
    pub fn data_dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// Residual blocks in forward order (one dropout mask each).
    fn blocks(&self) -> impl Iterator<Item = &ResBlock> {
        fn stage(s: &Stage) -> Option<&ResBlock> {
            match s {
                Stage::Block(b) => Some(b),
                _ => None,
            }
        }
        let down = self.down.iter().filter_map(stage);
        let up = self.up.iter().filter_map(stage);
        down.chain([&self.mid_1, &self.mid_2]).chain(up)
    }

    /// Features per row of each block's dropout mask (`cout · H · W`), in forward order.
    pub fn mask_sizes(&self) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut res = self.shape[1];
        let area = |r: usize| r * r;
        for s in &self.down {
            match s {
                Stage::Block(b) => sizes.push(b.width() * area(res)),
                Stage::Down(_) => res /= 2,
                Stage::Up(_) => unreachable!("no up stage in the encoder"),
            }
        }
        sizes.push(self.mid_1.width() * area(res));
        sizes.push(self.mid_2.width() * area(res));
        for s in &self.up {
            match s {
                Stage::Block(b) => sizes.push(b.width() * area(res)),
                Stage::Up(_) => res *= 2,
                Stage::Down(_) => unreachable!("no down stage in the decoder"),
            }
        }
        debug_assert_eq!(sizes.len(), self.blocks().count());
        sizes
    }

    /// Classes the network is conditioned on (0: unconditional).
    pub fn classes(&self) -> usize {
        self.label.as_ref().map_or(0, |l| l.weight.val().dims()[0])
    }

    /// `x: [B, C·H·W]`, `c_noise: [B]` or `[1]` (broadcast), `labels: [B, classes]` one-hot rows (zero rows,
    /// or none: no class) -> `[B, C·H·W]`.
    pub fn forward(
        &self,
        x: Tensor<2>,
        c_noise: Tensor<1>,
        labels: Option<&Tensor<2>>,
        masks: Option<&DropoutMasks>,
    ) -> Tensor<2> {
        self.forward_dual(Dual::primal(x), Dual::primal(c_noise), labels, masks).v
    }

    /// The forward pass with tangents (forward-mode JVP); without tangents it is the plain forward.
    /// Labels are constants (no tangent).
    pub fn forward_dual(
        &self,
        x: Dual<2>,
        c_noise: Dual<1>,
        labels: Option<&Tensor<2>>,
        masks: Option<&DropoutMasks>,
    ) -> Dual<2> {
        let [b, d] = x.v.dims();
        let [c, hh, ww] = self.shape;
        let ada = self.ada_norm;
        let mut emb = embed(&self.freqs, c_noise);
        if let (Some(map_label), Some(labels)) = (&self.label, labels) {
            let e = emb.v.dims()[1];
            if emb.v.dims()[0] != b {
                emb = emb.linear_map(|t| t.expand([b, e]));
            }
            let scale = (map_label.weight.val().dims()[0] as f64).sqrt();
            emb = emb + Dual::primal(map_label.forward(labels.clone() * scale));
        }
        let mut temb = linear(&self.time_2, linear(&self.time_1, emb).silu());
        if temb.v.dims()[0] != b {
            let e = temb.v.dims()[1];
            temb = temb.linear_map(|t| t.expand([b, e]));
        }
        let mut mask = {
            let mut i = 0;
            move || {
                i += 1;
                masks.map(|m| m.0[i - 1].clone())
            }
        };
        let mut h = conv2d(&self.input, x.linear_map(|t| t.reshape([b, c, hh, ww])));
        let mut skips = vec![h.clone()];
        for s in &self.down {
            h = match s {
                Stage::Block(block) => block.forward(h, temb.clone(), mask(), ada),
                Stage::Down(conv) => conv2d(conv, h),
                Stage::Up(_) => unreachable!("no up stage in the encoder"),
            };
            skips.push(h.clone());
        }
        h = self.mid_1.forward(h, temb.clone(), mask(), ada);
        h = self.mid_2.forward(h, temb.clone(), mask(), ada);
        for s in &self.up {
            h = match s {
                Stage::Block(block) => {
                    let skip = skips.pop().expect("one skip per encoder stage");
                    block.forward(cat(vec![h, skip], 1), temb.clone(), mask(), ada)
                }
                Stage::Up(conv) => conv2d(conv, h.linear_map(upsample)),
                Stage::Down(_) => unreachable!("no down stage in the decoder"),
            };
        }
        conv2d(&self.output, group_norm_act(&self.out_norm, h, None, true)).linear_map(|t| t.reshape([b, d]))
    }
}
