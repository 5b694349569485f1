//! `loss.png` in every run folder: the training loss from `metrics.jsonl` on a log scale (light blue), its
//! running mean (dark blue) and, where logged, the one-step quality metric (orange, own log scale: sliced
//! W2 for 2D runs, the consistency probe's jump RMS from sigma_max for image runs with a diffusion model).
//! No text: the axes are steps (left to right, linear) and values (log, bottom to top); the numbers are in
//! `metrics.jsonl`.

const W: usize = 640;
const H: usize = 320;
const PAD: usize = 16;

/// A PNG of the series in `metrics.jsonl` text.
pub fn loss_png(metrics_jsonl: &str) -> Vec<u8> {
    let mut loss = Vec::new();
    let mut quality = Vec::new();
    for line in metrics_jsonl.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(step) = v["step"].as_f64() else { continue };
        if let Some(l) = v["loss"].as_f64().filter(|l| *l > 0.0 && l.is_finite()) {
            loss.push((step, l));
        }
        let q = v["sliced_w2_1step"].as_f64().or_else(|| v["jump_rms_sigma_max"].as_f64());
        if let Some(q) = q.filter(|q| *q > 0.0 && q.is_finite()) {
            quality.push((step, q));
        }
    }
    let mut rgb = vec![255u8; W * H * 3];
    let (x0, x1, y0, y1) = (PAD, W - PAD, PAD, H - PAD);
    for x in x0..=x1 {
        put(&mut rgb, x, y1, [160, 160, 160]);
    }
    for y in y0..=y1 {
        put(&mut rgb, x0, y, [160, 160, 160]);
    }
    let last = loss.iter().chain(&quality).map(|p| p.0).fold(1.0, f64::max);
    let mut smooth = Vec::with_capacity(loss.len());
    let mut m = None;
    for &(s, l) in &loss {
        let v: f64 = m.map_or(l.ln(), |m: f64| 0.9 * m + 0.1 * l.ln());
        m = Some(v);
        smooth.push((s, v.exp()));
    }
    for (series, colour) in [(&loss, [170, 195, 235]), (&smooth, [31, 79, 191]), (&quality, [214, 110, 40])] {
        let logs: Vec<f64> = series.iter().map(|p| p.1.ln()).collect();
        let (lo, hi) = logs.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let span = (hi - lo).max(1e-9);
        let px = |(s, l): (f64, f64)| {
            let x = x0 as f64 + (s / last) * (x1 - x0) as f64;
            let y = y1 as f64 - ((l.ln() - lo) / span) * (y1 - y0) as f64;
            (x, y)
        };
        for pair in series.windows(2) {
            let (a, b) = (px(pair[0]), px(pair[1]));
            let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
            for i in 0..=n {
                let t = i as f64 / n as f64;
                put(&mut rgb, (a.0 + t * (b.0 - a.0)) as usize, (a.1 + t * (b.1 - a.1)) as usize, colour);
            }
        }
    }
    crate::io::png_bytes(W, H, 3, &rgb)
}

fn put(rgb: &mut [u8], x: usize, y: usize, c: [u8; 3]) {
    if x < W && y < H {
        rgb[(y * W + x) * 3..(y * W + x) * 3 + 3].copy_from_slice(&c);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plots_a_decreasing_loss() {
        let text: String =
            (1..=50).map(|s| format!("{{\"step\":{s},\"loss\":{}}}\n", 10.0 / s as f64)).collect();
        let png = super::loss_png(&text);
        assert_eq!(&png[1..4], b"PNG");
        // Empty or malformed metrics still give a valid (empty) plot.
        assert_eq!(&super::loss_png("not json\n")[1..4], b"PNG");
    }
}
