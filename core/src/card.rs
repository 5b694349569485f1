//! The model card (`config.json`) that travels with `model.safetensors`, and weight (de)serialisation
//! from bytes. One folder per model: `<dataset>-<method>/{config.json, model.safetensors}`.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::model::{Denoiser, ModelConfig};

/// Format tag of the card; bumped when a field changes meaning.
pub const CARD_FORMAT: &str = "cm-model/1";

/// The most steps a card may carry a tuned tau list for.
pub const MAX_TUNED_STEPS: usize = 64;

/// The training method that produced a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// EDM diffusion (a teacher; sampled with an ODE solver).
    Edm,
    /// Consistency training, CM recipe.
    Ct,
    /// Improved consistency training.
    Ict,
    /// Easy consistency tuning (Geng et al. 2024): consistency training whose pairs start at the data
    /// (diffusion training) and close in stage by stage; meant to start from a diffusion model's weights.
    Ect,
    /// Consistency distillation from a diffusion teacher (CM Algorithm 2).
    Cd,
    /// TrigFlow diffusion (sCM §3; a teacher, sampled with an ODE solver).
    Trigflow,
    /// Continuous-time consistency training in TrigFlow (sCM Algorithm 1).
    Sct,
    /// Continuous-time consistency distillation in TrigFlow (sCM Algorithm 1 with a teacher).
    Scd,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Edm => "edm",
            Method::Ct => "ct",
            Method::Ict => "ict",
            Method::Ect => "ect",
            Method::Cd => "cd",
            Method::Trigflow => "trigflow",
            Method::Sct => "sct",
            Method::Scd => "scd",
        }
    }

    /// Diffusion models (teachers), sampled by solving the PF-ODE.
    pub fn is_diffusion(self) -> bool {
        matches!(self, Method::Edm | Method::Trigflow)
    }

    /// Methods that distil a diffusion teacher.
    pub fn needs_teacher(self) -> bool {
        matches!(self, Method::Cd | Method::Scd)
    }

    /// Consistency methods of the `ct` recipe section (CT, iCT, ECT, CD): one loss between two levels.
    pub fn is_discrete_consistency(self) -> bool {
        matches!(self, Method::Ct | Method::Ict | Method::Ect | Method::Cd)
    }

    /// TrigFlow methods: the `scm` recipe section applies, with the adaptive weight `w_phi(t)`.
    pub fn is_trigflow(self) -> bool {
        matches!(self, Method::Trigflow | Method::Sct | Method::Scd)
    }

    /// The parameterisation this method trains.
    pub fn parameterisation(self) -> crate::Parameterisation {
        use crate::Parameterisation as P;
        match self {
            Method::Edm => P::Edm,
            Method::Ct | Method::Ict | Method::Ect | Method::Cd => P::Consistency,
            Method::Trigflow | Method::Sct | Method::Scd => P::TrigFlow,
        }
    }
}

/// `config.json`: what the network is and how it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Always [`CARD_FORMAT`].
    pub format: String,
    /// Folder name, `<dataset>-<method>`.
    pub name: String,
    /// Dataset name (`moons`, `swiss-roll`, ...).
    pub dataset: String,
    /// Training method.
    pub method: Method,
    /// Network and parameterisation.
    pub model: ModelConfig,
    /// Training steps taken.
    pub steps: u64,
    /// Training seed.
    pub seed: u64,
    /// Measured quality (e.g. `sliced_w2_1step`), filled by the training run.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// How the model was made: command, wall time, hardware, resolved training config.
    #[serde(default)]
    pub provenance: BTreeMap<String, serde_json::Value>,
    /// Tuned tau lists by step count (`{"2": [tau]}`), found by `cm tune` (a search on the model's own
    /// metric, as the CM paper picks its few-step time points by FID): where present, the model's
    /// default `k`-step list, on the page too. Checked when the card is read ([`ModelCard::tuned_taus`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub taus: BTreeMap<String, Vec<f64>>,
    /// SHA-256 of `model.safetensors` (lower-case hex), checked by [`ModelCard::load`]; cards written
    /// before it existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// The names of a class-conditional model's classes, in label order (`"0"` … `"9"` for digits, the
    /// emoji categories): one per class of the network, or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

impl ModelCard {
    /// Parses and validates a card.
    pub fn from_json(text: &str) -> Result<Self, CoreError> {
        let card: ModelCard = serde_json::from_str(text).map_err(|e| CoreError::Card(e.to_string()))?;
        if card.format != CARD_FORMAT {
            return Err(CoreError::Card(format!(
                "field `format` is {:?}, expected {:?}",
                card.format, CARD_FORMAT
            )));
        }
        card.model.validate().map_err(|e| CoreError::Card(format!("field `model`: {e}")))?;
        if card.model.parameterisation != card.method.parameterisation() {
            return Err(CoreError::Card(format!(
                "field `method` is {:?}, which trains the {:?} parameterisation, but field `model.parameterisation` is {:?}",
                card.method.name(),
                card.method.parameterisation(),
                card.model.parameterisation
            )));
        }
        card.check_taus().map_err(|e| CoreError::Card(format!("field `taus`: {e}")))?;
        card.check_names().map_err(CoreError::Card)?;
        let classes = card.model.architecture.classes();
        if !card.class_names.is_empty() && card.class_names.len() != classes {
            return Err(CoreError::Card(format!(
                "field `class_names` has {} names, but the network has {classes} classes",
                card.class_names.len()
            )));
        }
        Ok(card)
    }

    /// The name of class `c`: the card's, or its number where the card names none.
    pub fn class_name(&self, c: usize) -> String {
        self.class_names.get(c).cloned().unwrap_or_else(|| c.to_string())
    }

    /// The card's tuned tau list for `steps` steps, if it has one.
    pub fn tuned_taus(&self, steps: usize) -> Option<&[f64]> {
        self.taus.get(&steps.to_string()).map(Vec::as_slice)
    }

    /// `name` is shown wherever the model is (1 to 128 characters, none a control character);
    /// `dataset` names a view and a data source (1 to 64 letters, digits, `-`, `_`, `.`). A 2D dataset
    /// is modelled by the 2-D point network, and a point network models one of the 2D datasets, so a
    /// card cannot join a view whose data it does not produce.
    fn check_names(&self) -> Result<(), String> {
        let n = self.name.chars().count();
        if n == 0 || n > 128 || self.name.chars().any(char::is_control) {
            return Err(format!(
                "field `name` {:?}: expected 1 to 128 characters, none a control character",
                self.name.chars().take(40).collect::<String>()
            ));
        }
        let d = &self.dataset;
        if d.is_empty() || d.len() > 64 || !d.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "field `dataset` {:?}: expected 1 to 64 letters, digits, `-`, `_` or `.`",
                d.chars().take(40).collect::<String>()
            ));
        }
        let point_net = matches!(&self.model.architecture, crate::net::Architecture::Mlp(m) if m.dim == 2);
        let toy = crate::data2d::Dataset2d::from_name(d).is_some();
        if toy != point_net {
            let toys: Vec<&str> = crate::data2d::Dataset2d::ALL.iter().map(|s| s.name()).collect();
            return Err(if toy {
                format!(
                    "field `dataset` is the 2D dataset {d:?}, but the network is not the 2-D point network"
                )
            } else {
                format!("field `dataset` {d:?}: a 2-D point network models one of the 2D datasets {toys:?}")
            });
        }
        Ok(())
    }

    /// Every tuned list belongs to a consistency model, is keyed by a step count `k` in
    /// `2..=MAX_TUNED_STEPS` written plainly, holds `k - 1` levels, and passes the one rule below
    /// `sigma_max`.
    fn check_taus(&self) -> Result<(), String> {
        if !self.taus.is_empty() && !self.is_consistency() {
            return Err(format!(
                "a {} model samples by its ODE, so it has no tau lists; found steps {:?}",
                self.method.name(),
                self.taus.keys().collect::<Vec<_>>()
            ));
        }
        for (key, list) in &self.taus {
            let k = key
                .parse::<usize>()
                .ok()
                .filter(|k| (2..=MAX_TUNED_STEPS).contains(k) && k.to_string() == *key)
                .ok_or_else(|| format!("key {key:?} must be a step count from 2 to {MAX_TUNED_STEPS}"))?;
            if list.len() != k - 1 {
                return Err(format!("{k} steps need {} taus, found {} ({list:?})", k - 1, list.len()));
            }
            let range = &self.model.range;
            crate::sample::check_taus(list, range, range.sigma_max).map_err(|e| format!("{k} steps: {e}"))?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a card always serialises")
    }

    /// Whether samples come from the ODE solver (diffusion) or the consistency function.
    pub fn is_consistency(&self) -> bool {
        !self.method.is_diffusion()
    }

    /// Loads this card's weights file: the checksum (where the card has one), the architecture, and
    /// every weight finite. The one way a model folder's weights are read, natively and in the page.
    pub fn load(&self, bytes: Vec<u8>, device: &Device) -> Result<Denoiser, CoreError> {
        if let Some(want) = &self.weights_sha256 {
            check_sha256(&bytes, want).map_err(|e| {
                CoreError::Weights(format!(
                    "{e} (the card's `weights_sha256`): the file is damaged or belongs to another card"
                ))
            })?;
        }
        check_weights_size(&self.model, bytes.len())?;
        ensure_finite(&bytes)?;
        load_denoiser(&self.model, bytes, device)
    }
}

/// The most bytes a weights file's header may take besides the data (ours take a few KB).
pub const MAX_WEIGHTS_HEADER: u64 = 1 << 20;

/// Refuses a weights file of `len` bytes that cannot hold `config`'s parameters, or holds far more
/// than they and a header take: decided from the size alone, before the file is read or anything is
/// built.
fn check_weights_size(config: &ModelConfig, len: usize) -> Result<(), CoreError> {
    check_weights_len(len as u64, config.architecture.parameters())
        .map_err(|e| CoreError::Weights(format!("do not match the card's architecture: {e}")))
}

/// The one size rule of a safetensors file of `params` f32 parameters (a model's, a classifier's):
/// `len` bytes hold them all, and at most a [`MAX_WEIGHTS_HEADER`] besides.
pub fn check_weights_len(len: u64, params: u64) -> Result<(), String> {
    let need = params.saturating_mul(4);
    if len < need {
        return Err(format!("{len} bytes cannot hold its {params} parameters ({need} bytes of f32)"));
    }
    if len > need.saturating_add(MAX_WEIGHTS_HEADER) {
        return Err(format!(
            "{len} bytes, more than its {params} parameters ({need} bytes of f32) and a header of at most {MAX_WEIGHTS_HEADER} bytes"
        ));
    }
    Ok(())
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses `bytes` whose SHA-256 is not `want` (lower-case hex), saying both.
pub fn check_sha256(bytes: &[u8], want: &str) -> Result<(), String> {
    let have = sha256_hex(bytes);
    if have == want { Ok(()) } else { Err(format!("SHA-256 {have} differs from the recorded {want}")) }
}

/// Refuses safetensors `bytes` holding a NaN or infinite weight. Every tensor we write is F32
/// ([`check_header`] refuses other dtypes), so the data section is a run of little-endian f32; read on
/// the host, so it costs no device round trip (the page's WebGPU device cannot read synchronously).
pub fn ensure_finite(bytes: &[u8]) -> Result<(), CoreError> {
    let Some((header, data)) = split_safetensors(bytes) else { return Ok(()) };
    // Only the tensors' bytes (to the last one's end): anything after them is the parser's to refuse.
    let end = serde_json::from_slice::<serde_json::Value>(header)
        .ok()
        .and_then(|h| {
            let tensors = h.as_object()?.values();
            tensors.filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64()).max()
        })
        .map_or(data.len(), |end| usize::try_from(end).unwrap_or(usize::MAX).min(data.len()));
    let data = &data[..end];
    let bad =
        data.chunks_exact(4).position(|c| !f32::from_le_bytes(c.try_into().expect("4 bytes")).is_finite());
    match bad {
        Some(i) => Err(CoreError::Weights(format!("hold a NaN or infinite value (float {i} of the data)"))),
        None => Ok(()),
    }
}

/// A safetensors file's JSON header and its data section, or `None` where the file is shorter than its
/// 8-byte length prefix and the header that prefix announces.
fn split_safetensors(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = usize::try_from(n).ok()?.checked_add(8)?;
    Some((bytes.get(8..end)?, bytes.get(end..)?))
}

/// Serialises a module's weights (a denoiser, a classifier) as safetensors bytes: the same weights give
/// the same bytes (and so the same `weights_sha256`) every time, see [`canonical_header`].
pub fn weights_to_bytes<M: ModuleSnapshot>(model: &M) -> Result<Vec<u8>, CoreError> {
    let mut store = SafetensorsStore::from_bytes(None).skip_enum_variants(true);
    model.save_into(&mut store).map_err(|e| CoreError::Weights(e.to_string()))?;
    canonical_header(store.get_bytes().map_err(|e| CoreError::Weights(e.to_string()))?)
}

/// Rewrites a safetensors file's header with every JSON object's keys in sorted order, padded with
/// spaces to a multiple of 8 bytes as the format asks. burn fills the header's `__metadata__` from a
/// `HashMap`, whose order changes from one map to the next, so without this an unchanged model saved
/// twice gave two files with different SHA-256s. Tensor offsets are relative to the data section,
/// which is kept byte for byte, so reordering the header moves no tensor.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, CoreError> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let keys: BTreeMap<String, serde_json::Value> = map.into_iter().collect();
                serde_json::Value::Object(keys.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let (header, data) = split_safetensors(&bytes)
        .ok_or_else(|| CoreError::Weights("burn wrote a safetensors file with a truncated header".into()))?;
    let header: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| CoreError::Weights(format!("burn wrote an unreadable safetensors header: {e}")))?;
    let mut text = serde_json::to_string(&sorted(header)).expect("a JSON value serialises");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + data.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// Builds the card's model on `device` and loads `bytes` into it, refusing any missing, extra or
/// wrongly shaped tensor.
pub fn load_denoiser(config: &ModelConfig, bytes: Vec<u8>, device: &Device) -> Result<Denoiser, CoreError> {
    config.validate().map_err(CoreError::Card)?;
    // The network is built before the file's tensors are compared with it: a card that claims a
    // bigger network than its weights file holds is refused first, so what is allocated is bounded
    // by the file's own size.
    check_weights_size(config, bytes.len())?;
    load_weights(config.init(device), bytes)
}

/// Loads safetensors `bytes` into a freshly built module (a denoiser, a classifier), refusing any
/// missing, extra or wrongly shaped tensor.
pub fn load_weights<M: ModuleSnapshot>(mut model: M, bytes: Vec<u8>) -> Result<M, CoreError> {
    if bytes.len() < 8 {
        return Err(CoreError::Weights(format!("{} bytes is too short for a safetensors file", bytes.len())));
    }
    check_header(&model, &bytes)?;
    let mut store =
        SafetensorsStore::from_bytes(Some(bytes)).skip_enum_variants(true).validate(true).allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| CoreError::Weights(e.to_string()))?;
    let mut problems = Vec::new();
    if !result.errors.is_empty() {
        problems.push(format!("{:?}", result.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()));
    }
    if !result.missing.is_empty() {
        let names: Vec<_> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        problems.push(format!("missing tensors {names:?}"));
    }
    if !result.unused.is_empty() {
        problems.push(format!("tensors not in the architecture {:?}", result.unused));
    }
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(CoreError::Weights(format!("do not match the card's architecture: {}", problems.join("; "))))
    }
}

/// Compares the safetensors header (names, shapes, dtypes) with the architecture, so a mismatch is
/// reported in one readable line before any tensor is loaded.
fn check_header<M: ModuleSnapshot>(model: &M, bytes: &[u8]) -> Result<(), CoreError> {
    let (raw, data) = split_safetensors(bytes).ok_or_else(|| {
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("checked length"));
        CoreError::Weights(format!("truncated: header says {n} bytes, file has {}", bytes.len()))
    })?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(raw)
        .map_err(|e| CoreError::Weights(format!("not a safetensors file (header: {e})")))?;
    let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for t in model.collect(None, None, true) {
        expected.insert(t.name.clone(), t.shape.to_vec());
    }
    let mut problems = Vec::new();
    let mut data_end = 0u64;
    for (name, want) in &expected {
        let Some(info) = header.get(name) else {
            problems.push(format!("tensor {name} is missing"));
            continue;
        };
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64().map(|v| v as usize)).collect())
            .unwrap_or_default();
        if &shape != want {
            problems
                .push(format!("tensor {name} has shape {shape:?}, the card's architecture needs {want:?}"));
        }
        if info["dtype"] != "F32" {
            problems.push(format!("tensor {name} has dtype {}, expected F32", info["dtype"]));
        }
        data_end = data_end.max(info["data_offsets"][1].as_u64().unwrap_or(0));
    }
    let extra: Vec<_> =
        header.keys().filter(|k| *k != "__metadata__" && !expected.contains_key(*k)).collect();
    if !extra.is_empty() {
        problems.push(format!("tensors not in the architecture: {extra:?}"));
    }
    if problems.is_empty() && (data.len() as u64) < data_end {
        problems.push(format!(
            "truncated: tensors need {} bytes, file has {}",
            8 + raw.len() as u64 + data_end,
            bytes.len()
        ));
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(CoreError::Weights(format!("do not match the card's architecture: {}", problems[0]))),
        k => Err(CoreError::Weights(format!(
            "do not match the card's architecture: {} problems, first: {}",
            k, problems[0]
        ))),
    }
}
