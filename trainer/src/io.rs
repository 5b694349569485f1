//! Files: point clouds (`.npy`, `.csv`, `.png` scatter), model folders, atomic writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use cm_core::card::weights_to_bytes;
use cm_core::{Denoiser, Model, ModelCard};

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half a file
/// and an existing file survives a failed write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads a file a user supplies, refusing one over `max` bytes before reading it (a size decides memory).
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if len > max {
        bail!("{} is {len} bytes; at most {max} are expected for this file", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// cm's cache folder: `$CM_CACHE` (where set and not empty), else `~/.cache/cm`. It holds the data cache (`data/`, unless
/// `$CM_DATA` says otherwise), the Vulkan loader (`vulkan/`) and cubecl's kernel cache (`cubecl/`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CM_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("cm")
}

/// Cards and recipes are a few kilobytes.
pub const MAX_TEXT_FILE: u64 = 1 << 20;

/// A `[n, dim]` float32 array as NumPy `.npy` (format 1.0).
pub fn npy_bytes(data: &[f32], dim: usize) -> Vec<u8> {
    let n = data.len() / dim;
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dim}), }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a `[n, dim]` little-endian float32 `.npy` file.
pub fn read_npy(path: &Path) -> Result<(Vec<f32>, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{}: not a .npy file", path.display());
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + hlen).unwrap_or(&[])).unwrap_or("");
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        bail!("{}: expected a C-order float32 array, header {header:?}", path.display());
    }
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).unwrap_or("");
    let dims: Vec<usize> = shape.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let body = &bytes[10 + hlen..];
    let data: Vec<f32> = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    match dims.as_slice() {
        [n, d] if n * d == data.len() => Ok((data, *d)),
        _ => bail!("{}: expected a 2-D array, shape ({shape}) with {} values", path.display(), data.len()),
    }
}

/// A scatter plot of 2D points as PNG: `[-extent, extent]^2`, density-shaded.
pub fn scatter_png(points: &[f32], size: u32, extent: f32) -> Vec<u8> {
    let mut counts = vec![0u32; (size * size) as usize];
    for p in points.chunks_exact(2) {
        let px = ((p[0] + extent) / (2.0 * extent) * size as f32) as i64;
        let py = ((extent - p[1]) / (2.0 * extent) * size as f32) as i64;
        if (0..size as i64).contains(&px) && (0..size as i64).contains(&py) {
            counts[(py as u32 * size + px as u32) as usize] += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f32;
    let mut rgb = Vec::with_capacity(counts.len() * 3);
    for (i, &c) in counts.iter().enumerate() {
        let (x, y) = (i as u32 % size, i as u32 / size);
        let axis = x == size / 2 || y == size / 2;
        if c == 0 {
            let g = if axis { 225 } else { 255 };
            rgb.extend_from_slice(&[g, g, g]);
        } else {
            let t = 0.35 + 0.65 * (c as f32).ln_1p() / max.ln_1p();
            rgb.extend_from_slice(&[
                (30.0 * (1.0 - t)) as u8,
                (60.0 + 40.0 * (1.0 - t)) as u8,
                (120.0 + 110.0 * t) as u8,
            ]);
        }
    }
    png_bytes(size as usize, size as usize, 3, &rgb)
}

/// 8-bit grey (`channels = 1`) or RGB (`channels = 3`) pixels, row-major, encoded as PNG in memory.
pub fn png_bytes(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(if channels == 1 { png::ColorType::Grayscale } else { png::ColorType::Rgb });
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().expect("in-memory PNG header");
        w.write_image_data(pixels).expect("in-memory PNG data");
    }
    out
}

/// Images `[n, C·H·W]` in `[-1, 1]` as one PNG grid of `cols` columns, each image scaled up `zoom`×,
/// with a 1-pixel white gutter. Grey for `C = 1`, RGB for `C = 3`.
pub fn grid_png(pixels: &[f32], shape: [usize; 3], cols: usize, zoom: usize) -> Vec<u8> {
    let [c, h, w] = shape;
    let d = c * h * w;
    let n = pixels.len() / d.max(1);
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let (cw, ch) = (w * zoom + 1, h * zoom + 1);
    let (width, height) = (cols * cw + 1, rows * ch + 1);
    let out_c = if c == 1 { 1 } else { 3 };
    let mut buf = vec![255u8; width * height * out_c];
    for (i, img) in pixels.chunks_exact(d).enumerate() {
        let (gx, gy) = ((i % cols) * cw + 1, (i / cols) * ch + 1);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let at = ((gy + y) * width + gx + x) * out_c;
                for k in 0..out_c {
                    let v = img[k * h * w + (y / zoom) * w + x / zoom];
                    buf[at + k] = ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    png_bytes(width, height, out_c, &buf)
}

/// Zoom that makes an image about 64 pixels wide in a grid.
pub fn grid_zoom(shape: [usize; 3]) -> usize {
    (64 / shape[2].max(1)).max(1)
}

/// The file formats samples are written in, named by the output's extension (in any case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Npy,
    Csv,
    Png,
}

impl Format {
    pub const ALL: &[Format] = &[Format::Npy, Format::Csv, Format::Png];

    fn extension(self) -> &'static str {
        match self {
            Format::Npy => "npy",
            Format::Csv => "csv",
            Format::Png => "png",
        }
    }

    /// The format `path`'s extension names, among `allowed`; `what` is named in the error (e.g. the
    /// flag) with the formats expected.
    pub fn of(path: &Path, allowed: &[Format], what: &str) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if let Some(f) = allowed.iter().find(|f| ext.eq_ignore_ascii_case(f.extension())) {
            return Ok(*f);
        }
        let names: Vec<String> = allowed.iter().map(|f| format!(".{}", f.extension())).collect();
        bail!("{what} {}: unknown output format, expected {}", path.display(), names.join(", "))
    }
}

/// Writes samples in the format the extension names: `.npy`, `.csv`, or `.png` (scatter for 2D points,
/// a grid for images of `shape`).
pub fn write_samples(path: &Path, points: &[f32], dim: usize, shape: Option<[usize; 3]>) -> Result<()> {
    match (Format::of(path, Format::ALL, "output")?, shape) {
        (Format::Png, Some(shape)) => {
            let n = points.len() / dim.max(1);
            let cols = (n as f64).sqrt().ceil() as usize;
            write_atomic(path, &grid_png(points, shape, cols, grid_zoom(shape)))
        }
        _ => write_points(path, points, dim),
    }
}

/// Writes a point cloud in the format its extension names: `.npy`, `.csv` or `.png`.
pub fn write_points(path: &Path, points: &[f32], dim: usize) -> Result<()> {
    let bytes = match Format::of(path, Format::ALL, "output")? {
        Format::Npy => npy_bytes(points, dim),
        Format::Csv => {
            let mut s = String::new();
            s.push_str(&(0..dim).map(|i| format!("x{i}")).collect::<Vec<_>>().join(","));
            s.push('\n');
            for r in points.chunks_exact(dim) {
                s.push_str(&r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","));
                s.push('\n');
            }
            s.into_bytes()
        }
        Format::Png if dim == 2 => scatter_png(points, 512, 2.0),
        Format::Png => {
            bail!("{}: a PNG scatter needs 2D points, these have {dim} dimensions", path.display())
        }
    };
    write_atomic(path, &bytes)
}

pub const CARD_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Writes `config.json` and `model.safetensors` into `dir`, each atomically.
///
/// The folder is replaced as a whole: weights and card are written to a sibling folder, which then
/// takes the old one's place, so a reader sees the old model or the new one, never the weights of one
/// with the card of the other. The card records the weights' SHA-256, checked on every load. Only a
/// model folder is replaced: anything else at `dir` (a run folder, a file, a folder holding other
/// files) is refused before anything is written.
pub fn save_model_dir(dir: &Path, card: &ModelCard, model: &Denoiser) -> Result<()> {
    check_replaceable_dir(dir, &[CARD_FILE, WEIGHTS_FILE], "a model folder")?;
    let bytes = weights_to_bytes(model).context("cannot serialise weights")?;
    let mut card = card.clone();
    card.weights_sha256 = Some(cm_core::card::sha256_hex(&bytes));
    let name = dir.file_name().and_then(|n| n.to_str()).context("a model folder needs a name")?;
    let sibling = |what: &str| dir.with_file_name(format!(".{name}.{what}{}", std::process::id()));
    let (new, old) = (sibling("new"), sibling("old"));
    let _ = std::fs::remove_dir_all(&new);
    let written = write_atomic(&new.join(WEIGHTS_FILE), &bytes)
        .and_then(|_| write_atomic(&new.join(CARD_FILE), card.to_json().as_bytes()))
        .and_then(|_| {
            if dir.exists() {
                std::fs::rename(dir, &old)
                    .with_context(|| format!("cannot move the old {} aside", dir.display()))?;
            }
            std::fs::rename(&new, dir)
                .with_context(|| format!("cannot move the new model into {}", dir.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&new);
        if old.exists() && !dir.exists() {
            let _ = std::fs::rename(&old, dir);
        }
        return written;
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Refuses a `dir` that exists and is not `what` (nothing in it but the files `allowed`, or nothing),
/// naming what it holds; returns whether it holds any of `allowed` (something to replace).
pub fn check_replaceable_dir(dir: &Path, allowed: &[&str], what: &str) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(_) if !dir.exists() => return Ok(false),
        Err(_) if !dir.is_dir() => {
            bail!("{} is a file, not {what}: refusing to replace it; choose another folder", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let (mut others, mut any) = (Vec::new(), false);
    for entry in entries {
        let name = entry.with_context(|| format!("cannot list {}", dir.display()))?.file_name();
        let name = name.to_string_lossy();
        if allowed.contains(&name.as_ref()) {
            any = true;
        } else {
            others.push(name.into_owned());
        }
    }
    if !others.is_empty() {
        others.sort();
        let shown = others.iter().take(3).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let more = if others.len() > 3 { format!(" and {} more", others.len() - 3) } else { String::new() };
        bail!(
            "{} is not {what} (it holds {shown}{more}): refusing to replace it; choose another folder",
            dir.display()
        );
    }
    Ok(any)
}

/// Reads a model folder and loads its weights on `device` as core's [`Model`], with errors naming the file.
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<Model> {
    if !dir.is_dir() {
        bail!("model folder {} does not exist", dir.display());
    }
    let card_path: PathBuf = dir.join(CARD_FILE);
    let text = String::from_utf8(read_limited(&card_path, MAX_TEXT_FILE)?)
        .with_context(|| format!("{} is not UTF-8 text", card_path.display()))?;
    let card = ModelCard::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", card_path.display()))?;
    // The card's `model.architecture` is a recipe's `network`.
    crate::config::check_dataset_network(&card.dataset, &card.model.architecture, "model.architecture")
        .map_err(|e| anyhow::anyhow!("{}: {e}", card_path.display()))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes =
        std::fs::read(&weights_path).with_context(|| format!("cannot read {}", weights_path.display()))?;
    let denoiser =
        card.load(bytes, device).map_err(|e| anyhow::anyhow!("{}: {e}", weights_path.display()))?;
    Ok(Model::new(card, denoiser))
}

/// Adds `name` to `<models>/index.json` (the list the web page loads), creating it if needed; every
/// other field of the file (the page's `notes`) is kept as it was.
pub fn register_in_index(models_dir: &Path, name: &str) -> Result<()> {
    let path = models_dir.join("index.json");
    let mut index = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?,
        Err(_) => serde_json::json!({ "models": [] }),
    };
    let models = index
        .get_mut("models")
        .and_then(|m| m.as_array_mut())
        .with_context(|| format!("{}: expected {{\"models\": [..]}}", path.display()))?;
    let mut names: Vec<String> = models.iter().filter_map(|m| m.as_str().map(String::from)).collect();
    if !names.iter().any(|n| n == name) {
        names.push(name.to_string());
        names.sort();
    }
    *models = names.into_iter().map(serde_json::Value::from).collect();
    let text = serde_json::to_string_pretty(&index)?;
    write_atomic(&path, format!("{text}\n").as_bytes())
}
