//! cm patch (not upstream; see CM-PATCH.md at the crate root): faster f32 kernels for what dominates a
//! small U-Net's training step on the CPU.
//!
//! - `sigmoid` (and so SiLU, forward and the autodiff backward, which recomputes it): upstream calls the
//!   C library's scalar `expf` per element behind a sign branch. Here `exp` is Cephes' `expf` (range
//!   reduction by `ln 2` in two parts, degree-6 polynomial, `2^n` put together in the exponent bits),
//!   branch-free so the loop is vectorised, with AVX2 + FMA chosen at run time on x86-64. Relative error
//!   of `exp` below 2 ulp on the range used, so `sigmoid` agrees with upstream's to float rounding
//!   (tested below against `f64`).
//! - 2D convolution, forward and both gradients, as im2col + gemm on NCHW data (the section below).

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{DType, TensorMetadata};
use burn_std::Bytes;

use crate::{FlexTensor, Layout};

/// `1 / (1 + exp(-x))` for every element of an f32 tensor, in place when the tensor is unique.
pub(crate) fn sigmoid_f32_tensor(tensor: FlexTensor) -> FlexTensor {
    debug_assert_eq!(tensor.dtype(), DType::F32);
    let tensor = if tensor.layout().is_contiguous() && tensor.layout().start_offset() == 0 {
        tensor
    } else {
        tensor.to_contiguous()
    };
    let n = tensor.layout().num_elements();
    if tensor.is_unique() {
        let mut tensor = tensor;
        let storage: &mut [f32] = tensor.storage_mut();
        sigmoid_inplace(&mut storage[..n]);
        return tensor;
    }
    let src: &[f32] = tensor.storage();
    let mut out: Vec<f32> = src[..n].to_vec();
    sigmoid_inplace(&mut out);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(tensor.layout().shape().clone()),
        DType::F32,
    )
}

/// `xs[i] = sigmoid(xs[i])`.
pub(crate) fn sigmoid_inplace(xs: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { sigmoid_inplace_avx2(xs) };
            return;
        }
    }
    sigmoid_inplace_portable(xs);
}

/// The same loop compiled for AVX2 + FMA.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid_inplace_avx2(xs: &mut [f32]) {
    sigmoid_inplace_portable(xs);
}

#[inline(always)]
fn sigmoid_inplace_portable(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = sigmoid(*x);
    }
}

/// `1 / (1 + exp(-x))`; NaN stays NaN.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let s = 1.0 / (1.0 + exp(-x));
    if x.is_nan() { x } else { s }
}

/// `exp(z)` for `z` clamped to `[-87, 88]` (outside it `sigmoid` is 0 or 1 to f32 precision, and
/// `2^n` stays a normal number), Cephes `expf`: `z = n ln 2 + r`, `|r| <= ln 2 / 2`.
#[inline(always)]
pub(crate) fn exp(z: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let z = z.clamp(-87.0, 88.0);
    let t = z * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = z - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5.000_000_1e-1;
    let e = p * (r * r) + r + 1.0;
    let k = (t.to_bits() as i32).wrapping_sub(0x4B40_0000); // n as an integer
    e * f32::from_bits(((k + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_sigmoid_match_f64() {
        let mut worst_exp = 0.0f64;
        let mut worst_sig = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let rel = ((exp(x) as f64) / (x as f64).exp() - 1.0).abs();
            worst_exp = worst_exp.max(rel);
            let s64 = 1.0 / (1.0 + (-(x as f64)).exp());
            worst_sig = worst_sig.max(((sigmoid(x) as f64) - s64).abs() / s64.max(1e-30));
            x += 0.001_3;
        }
        assert!(worst_exp < 2.5e-7, "exp relative error {worst_exp}");
        assert!(worst_sig < 2.5e-7, "sigmoid relative error {worst_sig}");
        assert_eq!(sigmoid(1e4), 1.0);
        assert!(sigmoid(-1e4) < 1e-37);
        assert!(sigmoid(f32::NAN).is_nan());
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(sigmoid(f32::NEG_INFINITY) < 1e-37);
        let mut v: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.05).collect();
        let want: Vec<f32> = v.iter().map(|&x| sigmoid(x)).collect();
        sigmoid_inplace(&mut v);
        assert_eq!(v, want);
    }
}

// ---------------------------------------------------------------------------------------------------
// 2D convolution as im2col + gemm on NCHW data, forward and both gradients.
//
// Per sample `b` the input's patches are laid out as `col_b` `[C_in·k_h·k_w, P]` (`P = out_h·out_w`,
// rows ordered `(ci, i, j)` as the weight's `[C_out, C_in/groups, k_h, k_w]` flattens), so per group
//   forward          y_b  = W · col_b                      ([C_out, P], written straight into NCHW)
//   data gradient    dx_b = col2im(Wᵀ · G_b)               (scatter-add of the patch gradients)
//   weight gradient  dW   = Σ_b G_b · col_bᵀ
// Upstream builds an NHWC copy, an im2col tile per 512 outputs and a transposed result per tile for the
// forward pass, computes the data gradient with direct transposed-convolution loops and the weight
// gradient as a convolution whose kernel is the output gradient. Samples are independent, so they run
// in parallel; the weight gradient sums chunks of `WEIGHT_GRAD_CHUNK` samples in a fixed order, so no
// result depends on the number of threads.
// ---------------------------------------------------------------------------------------------------

use burn_backend::ops::ConvOptions;

/// Samples whose weight-gradient contributions are accumulated by one gemm chain before the chunks
/// are added in order.
const WEIGHT_GRAD_CHUNK: usize = 8;

/// Element types the gemm path takes.
pub(crate) trait ConvScalar:
    burn_backend::Element + bytemuck::Pod + Default + core::ops::Add<Output = Self> + Send + Sync
{
    const ONE: Self;
}
impl ConvScalar for f32 {
    const ONE: Self = 1.0;
}
impl ConvScalar for f64 {
    const ONE: Self = 1.0;
}

/// Sizes of one 2D convolution.
#[derive(Clone, Copy)]
struct Geom {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k_h: usize,
    k_w: usize,
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
}

impl Geom {
    fn new(x: &[usize], w: &[usize], options: &ConvOptions<2>) -> Option<Self> {
        let (batch, c_in, h, wd) = (x[0], x[1], x[2], x[3]);
        let (c_out, cpg, k_h, k_w) = (w[0], w[1], w[2], w[3]);
        let groups = options.groups;
        if groups == 0 || c_in != cpg * groups || c_out % groups != 0 || k_h == 0 || k_w == 0 {
            return None;
        }
        let out = |len: usize, k: usize, dim: usize| {
            let (pb, pe) = options.padding[dim];
            let span = options.dilation[dim] * (k - 1) + 1;
            (len + pb + pe).checked_sub(span).map(|n| n / options.stride[dim] + 1)
        };
        Some(Self {
            batch,
            c_in,
            h,
            w: wd,
            c_out,
            k_h,
            k_w,
            out_h: out(h, k_h, 0)?,
            out_w: out(wd, k_w, 1)?,
            stride: options.stride,
            pad: options.padding_begin(),
            dil: options.dilation,
            groups,
        })
    }
    fn p(&self) -> usize {
        self.out_h * self.out_w
    }
    /// im2col rows per group (one output channel's weights).
    fn n(&self) -> usize {
        self.c_in / self.groups * self.k_h * self.k_w
    }
    fn rows(&self) -> usize {
        self.c_in * self.k_h * self.k_w
    }
    /// For patch row `i` and output row `oy`: the input row, or `None` in the padding.
    #[inline]
    fn src_row(&self, i: usize, oy: usize) -> Option<usize> {
        let y = (oy * self.stride[0] + i * self.dil[0]) as isize - self.pad[0] as isize;
        (0..self.h as isize).contains(&y).then_some(y as usize)
    }
    /// For patch column `j`: the offset `dx` and the output columns `lo..hi` whose input column
    /// `ox·s + dx` is inside the image.
    #[inline]
    fn cols(&self, j: usize) -> (isize, usize, usize) {
        let dx = (j * self.dil[1]) as isize - self.pad[1] as isize;
        let s = self.stride[1] as isize;
        // ox·s + dx >= 0 and < w
        let lo = if dx >= 0 { 0 } else { ((-dx) + s - 1) / s };
        let hi = if (self.w as isize) <= dx { 0 } else { ((self.w as isize - dx) + s - 1) / s };
        let lo = (lo as usize).min(self.out_w);
        let hi = (hi as usize).clamp(lo, self.out_w);
        (dx, lo, hi)
    }

    /// With stride 1 and output rows as wide as the image's, patch row `(i, ·)` reads the
    /// plane at a constant offset: output index `o` comes from plane index `o + shift`. Returns the
    /// output range `a..b` from the first valid row's column `lo` to the last valid row's column
    /// `hi` (every index in it is inside the plane) and `shift`; `None` when the shape does not allow
    /// it or no row is valid.
    #[inline]
    fn block(&self, i: usize, dx: isize, lo: usize, hi: usize) -> Option<(usize, usize, isize)> {
        if self.stride != [1, 1] || self.out_w != self.w || lo >= hi {
            return None;
        }
        let first = (0..self.out_h).find(|&oy| self.src_row(i, oy).is_some())?;
        let last = (0..self.out_h).rev().find(|&oy| self.src_row(i, oy).is_some())?;
        let dy = self.src_row(i, first)? as isize - first as isize;
        let shift = dy * self.w as isize + dx;
        Some((first * self.out_w + lo, last * self.out_w + hi, shift))
    }
}

/// `col = im2col(x_b)`, `x_b` `[c_in, h, w]`, `col` `[rows, P]`.
fn im2col<T: ConvScalar>(g: &Geom, xb: &[T], col: &mut [T]) {
    let (p, ow) = (g.p(), g.out_w);
    for i in 0..g.k_h {
        for j in 0..g.k_w {
            let (dx, lo, hi) = g.cols(j);
            let block = g.block(i, dx, lo, hi);
            let edges = lo > 0 || hi < ow;
            for ci in 0..g.c_in {
                let plane = &xb[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                let row = &mut col[((ci * g.k_h + i) * g.k_w + j) * p..][..p];
                if let Some((a, b, shift)) = block {
                    // Same-width rows: the valid part is one contiguous run of the plane; the
                    // columns that fall in the padding are zeroed after the copy.
                    row[..a].fill(T::default());
                    row[b..].fill(T::default());
                    let src = (a as isize + shift) as usize;
                    row[a..b].copy_from_slice(&plane[src..src + (b - a)]);
                    for oy in (a / ow..b.div_ceil(ow)).filter(|_| edges) {
                        row[oy * ow..oy * ow + lo].fill(T::default());
                        row[oy * ow + hi..(oy + 1) * ow].fill(T::default());
                    }
                    continue;
                }
                for oy in 0..g.out_h {
                    let out = &mut row[oy * ow..(oy + 1) * ow];
                    let Some(y) = g.src_row(i, oy) else {
                        out.fill(T::default());
                        continue;
                    };
                    let src = &plane[y * g.w..(y + 1) * g.w];
                    out[..lo].fill(T::default());
                    out[hi..].fill(T::default());
                    if g.stride[1] == 1 {
                        let a = (lo as isize + dx) as usize;
                        out[lo..hi].copy_from_slice(&src[a..a + (hi - lo)]);
                    } else {
                        for (ox, o) in out[lo..hi].iter_mut().enumerate() {
                            *o = src[(((lo + ox) * g.stride[1]) as isize + dx) as usize];
                        }
                    }
                }
            }
        }
    }
}

/// `dx_b += col2im(dcol)`: every patch entry added back to the input pixel it was read from.
fn col2im<T: ConvScalar>(g: &Geom, dcol: &mut [T], dxb: &mut [T]) {
    let (p, ow) = (g.p(), g.out_w);
    for i in 0..g.k_h {
        for j in 0..g.k_w {
            let (dx, lo, hi) = g.cols(j);
            let block = g.block(i, dx, lo, hi);
            let edges = lo > 0 || hi < ow;
            for ci in 0..g.c_in {
                let plane = &mut dxb[ci * g.h * g.w..(ci + 1) * g.h * g.w];
                let row = &mut dcol[((ci * g.k_h + i) * g.k_w + j) * p..][..p];
                if let Some((a, b, shift)) = block {
                    // Same-width rows: zero the entries that came from the padding (dcol is
                    // scratch), then add the valid run to the plane in one pass.
                    for oy in (a / ow..b.div_ceil(ow)).filter(|_| edges) {
                        row[oy * ow..oy * ow + lo].fill(T::default());
                        row[oy * ow + hi..(oy + 1) * ow].fill(T::default());
                    }
                    let dst = (a as isize + shift) as usize;
                    for (d, s) in plane[dst..dst + (b - a)].iter_mut().zip(&row[a..b]) {
                        *d = *d + *s;
                    }
                    continue;
                }
                for oy in 0..g.out_h {
                    let Some(y) = g.src_row(i, oy) else { continue };
                    let src = &row[oy * ow..(oy + 1) * ow];
                    let dst = &mut plane[y * g.w..(y + 1) * g.w];
                    if g.stride[1] == 1 {
                        let a = (lo as isize + dx) as usize;
                        for (d, s) in dst[a..a + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d = *d + *s;
                        }
                    } else {
                        for ox in lo..hi {
                            let xx = ((ox * g.stride[1]) as isize + dx) as usize;
                            dst[xx] = dst[xx] + src[ox];
                        }
                    }
                }
            }
        }
    }
}

/// `dst [m, n] (=|+=) lhs [m, k] · rhs [k, n]`, each given by its pointer and (row, column) strides.
///
/// # Safety
/// Every index `r · rs + c · cs` inside the given sizes must be in bounds of its buffer, and `dst` must
/// not overlap the inputs.
unsafe fn gemm_into<T: ConvScalar>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, usize, usize),
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Runs `f(i, out_i, scratch)` for every `len`-long block `i` of `out` (a sample, or the weight
/// gradient's chunk of samples), in parallel when rayon is on, with one scratch buffer per worker.
fn per_sample<T: ConvScalar>(
    out: &mut [T],
    len: usize,
    scratch_len: usize,
    f: impl Fn(usize, &mut [T], &mut Vec<T>) + Send + Sync,
) {
    if len == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len)
            .enumerate()
            .for_each_init(|| vec![T::default(); scratch_len], |scratch, (b, o)| f(b, o, scratch));
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut scratch = vec![T::default(); scratch_len];
        for (b, o) in out.chunks_mut(len).enumerate() {
            f(b, o, &mut scratch);
        }
    }
}

fn forward_typed<T: ConvScalar>(
    g: &Geom,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
) -> FlexTensor {
    let (xs, ws): (&[T], &[T]) = (x.storage(), weight.storage());
    let bs: Option<&[T]> = bias.map(|b| b.storage());
    let (p, n, co_pg) = (g.p(), g.n(), g.c_out / g.groups);
    let mut out = vec![T::default(); g.batch * g.c_out * p];
    per_sample(&mut out, g.c_out * p, g.rows() * p, |b, yb, col| {
        im2col(g, &xs[b * g.c_in * g.h * g.w..][..g.c_in * g.h * g.w], col);
        for gi in 0..g.groups {
            // SAFETY: y_b's rows gi·co_pg.. ([co_pg, p]), W's rows ([co_pg, n]), col's rows gi·n..
            // ([n, p]), all inside their buffers; yb is this sample's own output.
            unsafe {
                gemm_into(
                    (co_pg, p, n),
                    (yb[gi * co_pg * p..].as_mut_ptr(), p, 1),
                    false,
                    (ws[gi * co_pg * n..].as_ptr(), n, 1),
                    (col[gi * n * p..].as_ptr(), p, 1),
                );
            }
        }
        if let Some(bs) = bs {
            for (co, row) in yb.chunks_mut(p).enumerate() {
                for v in row {
                    *v = *v + bs[co];
                }
            }
        }
    });
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(burn_std::Shape::from(alloc::vec![g.batch, g.c_out, g.out_h, g.out_w])),
        T::dtype(),
    )
}

fn x_backward_typed<T: ConvScalar>(g: &Geom, weight: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let (ws, gs): (&[T], &[T]) = (weight.storage(), grad.storage());
    let (p, n, co_pg) = (g.p(), g.n(), g.c_out / g.groups);
    let mut dx = vec![T::default(); g.batch * g.c_in * g.h * g.w];
    per_sample(&mut dx, g.c_in * g.h * g.w, g.rows() * p, |b, dxb, dcol| {
        for gi in 0..g.groups {
            // SAFETY: dcol's rows gi·n.. ([n, p]); Wᵀ read from W's rows gi·co_pg.. as (r, co) at
            // co·n + r ([n, co_pg]); G_b's rows gi·co_pg.. ([co_pg, p]); all in bounds.
            unsafe {
                gemm_into(
                    (n, p, co_pg),
                    (dcol[gi * n * p..].as_mut_ptr(), p, 1),
                    false,
                    (ws[gi * co_pg * n..].as_ptr(), 1, n),
                    (gs[(b * g.c_out + gi * co_pg) * p..].as_ptr(), p, 1),
                );
            }
        }
        col2im(g, dcol, dxb);
    });
    FlexTensor::new(
        Bytes::from_elems(dx),
        Layout::contiguous(burn_std::Shape::from(alloc::vec![g.batch, g.c_in, g.h, g.w])),
        T::dtype(),
    )
}

fn weight_backward_typed<T: ConvScalar>(g: &Geom, x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
    let (xs, gs): (&[T], &[T]) = (x.storage(), grad.storage());
    let (p, n, co_pg) = (g.p(), g.n(), g.c_out / g.groups);
    let chunks = g.batch.div_ceil(WEIGHT_GRAD_CHUNK);
    let mut partial = vec![T::default(); chunks * g.c_out * n];
    per_sample(&mut partial, g.c_out * n, g.rows() * p, |c, dw, col| {
        let samples = c * WEIGHT_GRAD_CHUNK..((c + 1) * WEIGHT_GRAD_CHUNK).min(g.batch);
        for (k, b) in samples.enumerate() {
            im2col(g, &xs[b * g.c_in * g.h * g.w..][..g.c_in * g.h * g.w], col);
            for gi in 0..g.groups {
                // SAFETY: dW's rows gi·co_pg.. ([co_pg, n]); G_b's rows gi·co_pg.. ([co_pg, p]);
                // col_bᵀ read from col's rows gi·n.. as (q, r) at r·p + q ([p, n]); all in bounds.
                unsafe {
                    gemm_into(
                        (co_pg, n, p),
                        (dw[gi * co_pg * n..].as_mut_ptr(), n, 1),
                        k > 0,
                        (gs[(b * g.c_out + gi * co_pg) * p..].as_ptr(), p, 1),
                        (col[gi * n * p..].as_ptr(), 1, p),
                    );
                }
            }
        }
    });
    let len = g.c_out * n;
    let mut dw = partial[..len].to_vec();
    for part in partial.chunks(len).skip(1) {
        for (a, b) in dw.iter_mut().zip(part) {
            *a = *a + *b;
        }
    }
    FlexTensor::new(
        Bytes::from_elems(dw),
        Layout::contiguous(burn_std::Shape::from(alloc::vec![
            g.c_out,
            g.c_in / g.groups,
            g.k_h,
            g.k_w
        ])),
        T::dtype(),
    )
}

/// Forward `conv2d` through im2col + gemm for f32/f64 kernels larger than 1×1; `None` leaves the
/// call to upstream (other float types, 1×1 kernels, which upstream already runs as one gemm).
pub(crate) fn conv2d(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let g = Geom::new(&x.shape().dims::<4>(), &weight.shape().dims::<4>(), options)?;
    if g.k_h * g.k_w == 1 || weight.dtype() != x.dtype() {
        return None;
    }
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let bias = bias.map(|b| b.to_contiguous());
    match x.dtype() {
        DType::F32 => Some(forward_typed::<f32>(&g, &x, &weight, bias.as_ref())),
        DType::F64 => Some(forward_typed::<f64>(&g, &x, &weight, bias.as_ref())),
        _ => None,
    }
}

/// Which gradient of `conv2d(x, weight)` to compute.
#[derive(Clone, Copy)]
pub(crate) enum ConvGrad {
    X,
    Weight,
}

/// The data or weight gradient of `conv2d(x, weight)`, any stride, padding, dilation, groups and
/// float type (f16 and bf16 through f32).
pub(crate) fn conv2d_backward(
    which: ConvGrad,
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    use burn_std::{bf16, f16};
    let dtype = x.dtype();
    let g = Geom::new(&x.shape().dims::<4>(), &weight.shape().dims::<4>(), options)
        .expect("conv2d backward: shapes of a convolution that ran forward");
    assert_eq!(
        output_grad.shape().dims::<4>(),
        [g.batch, g.c_out, g.out_h, g.out_w],
        "conv2d backward: output gradient shape"
    );
    // The data gradient reads the weight, the weight gradient reads x: only that one is made
    // contiguous (and, for f16/bf16, cast).
    let run = |input: FlexTensor, grad: FlexTensor, f64: bool| {
        let (input, grad) = (input.to_contiguous(), grad.to_contiguous());
        match (which, f64) {
            (ConvGrad::X, false) => x_backward_typed::<f32>(&g, &input, &grad),
            (ConvGrad::X, true) => x_backward_typed::<f64>(&g, &input, &grad),
            (ConvGrad::Weight, false) => weight_backward_typed::<f32>(&g, &input, &grad),
            (ConvGrad::Weight, true) => weight_backward_typed::<f64>(&g, &input, &grad),
        }
    };
    let input = match which {
        ConvGrad::X => weight,
        ConvGrad::Weight => x,
    };
    use crate::ops::module::{cast_from_f32, cast_to_f32};
    match dtype {
        DType::F32 => run(input, output_grad, false),
        DType::F64 => run(input, output_grad, true),
        DType::F16 => cast_from_f32(
            run(cast_to_f32(input, f16::to_f32), cast_to_f32(output_grad, f16::to_f32), false),
            f16::from_f32,
        ),
        DType::BF16 => cast_from_f32(
            run(cast_to_f32(input, bf16::to_f32), cast_to_f32(output_grad, bf16::to_f32), false),
            bf16::from_f32,
        ),
        dtype => panic!("conv2d backward: unsupported dtype {:?}", dtype),
    }
}
