//! Schedules and scalings against golden values from tests/golden/make_golden.py, an independent
//! Python implementation of the papers' formulas (float64, standard library only).

use cm_core::distance::Distance;
use cm_core::param::{NoiseRange, Parameterisation};
use cm_core::schedule::{Curriculum, ect_r, ect_stage, karras, lognormal_index_probs};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("../golden/golden.json")).expect("golden.json parses")
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300) + 1e-300
}

#[test]
fn karras_grid_matches_golden() {
    let g = golden();
    for (n, want) in g["karras"].as_object().unwrap() {
        let got = karras(n.parse().unwrap(), 0.002, 80.0, 7.0);
        let want: Vec<f64> = want.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!(close(*a, *b, 1e-12), "N={n}: {a} vs {b}");
        }
    }
}

#[test]
fn cm_curriculum_matches_golden() {
    for row in golden()["cm_curriculum"].as_array().unwrap() {
        let (k, total) = (row["k"].as_u64().unwrap(), row["K"].as_u64().unwrap());
        assert_eq!(Curriculum::CM.n(k, total).unwrap() as u64, row["n"].as_u64().unwrap(), "k={k}");
        assert!(close(Curriculum::CM.mu(k, total), row["mu"].as_f64().unwrap(), 1e-12), "k={k}");
    }
}

#[test]
fn ict_curriculum_matches_golden() {
    for row in golden()["ict_curriculum"].as_array().unwrap() {
        let (k, total) = (row["k"].as_u64().unwrap(), row["K"].as_u64().unwrap());
        assert_eq!(Curriculum::ICT.n(k, total).unwrap() as u64, row["n"].as_u64().unwrap(), "k={k}");
        assert_eq!(Curriculum::ICT.mu(k, total), 0.0);
    }
}

#[test]
fn ect_stages_and_mapping_match_golden() {
    let g = golden();
    for row in g["ect_stage"].as_array().unwrap() {
        let (k, total) = (row["k"].as_u64().unwrap(), row["K"].as_u64().unwrap());
        let stages = row["stages"].as_u64().unwrap() as u32;
        assert_eq!(ect_stage(k, total, stages) as u64, row["stage"].as_u64().unwrap(), "k={k} K={total}");
    }
    for row in g["ect_r"].as_array().unwrap() {
        let f = |key: &str, default: f64| row.get(key).map_or(default, |v| v.as_f64().unwrap());
        let (t, stage) = (f("t", f64::NAN), row["stage"].as_u64().unwrap() as u32);
        let got = ect_r(t, stage, f("q", 2.0), f("k", 8.0), f("b", 1.0));
        let want = f("r", f64::NAN);
        assert!(close(got, want, 1e-12), "t={t} stage={stage}: {got} vs {want}");
    }
    assert!(Curriculum::ECT.n(5, 10).is_none(), "ECT has no grid");
    assert_eq!(Curriculum::ECT.mu(5, 10), 0.0, "ECT's target is stopgrad(theta)");
}

#[test]
fn lognormal_index_probabilities_match_golden() {
    let want: Vec<f64> =
        golden()["lognormal_probs_11"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let got = lognormal_index_probs(&karras(11, 0.002, 80.0, 7.0), -1.1, 2.0);
    for (a, b) in got.iter().zip(&want) {
        assert!(close(*a, *b, 1e-9), "{a} vs {b}");
    }
}

#[test]
fn scalings_match_golden() {
    let range = NoiseRange::default();
    for row in golden()["scalings"].as_array().unwrap() {
        let p = match row["kind"].as_str().unwrap() {
            "edm" => Parameterisation::Edm,
            "consistency" => Parameterisation::Consistency,
            _ => Parameterisation::TrigFlow,
        };
        let sigma = row["sigma"].as_f64().unwrap();
        let s = p.scalings(sigma, &range);
        for (name, got) in
            [("c_skip", s.c_skip), ("c_out", s.c_out), ("c_in", s.c_in), ("c_noise", s.c_noise)]
        {
            let want = row[name].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{p:?} sigma={sigma} {name}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn pseudo_huber_constant_matches_golden() {
    let g = golden();
    for (dim, want) in g["pseudo_huber_c"].as_object().unwrap() {
        assert!(close(Distance::pseudo_huber_c(dim.parse().unwrap()), want.as_f64().unwrap(), 1e-12));
    }
}
