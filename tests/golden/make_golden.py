#!/usr/bin/env python3
"""Golden values for cm's schedules and scalings, computed independently of the Rust code.

Written from the papers' formulas (EDM's grid and preconditioning, CM's and iCT's curricula and
level sampling, sCM's TrigFlow parameterisation, ECT's mapping; each function names its source), in Python's
standard library only (math.erf, float64). Run `python3 tests/golden/make_golden.py > tests/golden/golden.json` to
regenerate; the Rust tests in tests/tests/golden.rs compare against this file.
"""
import json
import math

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA, RHO = 0.002, 80.0, 0.5, 7.0


def karras(n, smin=SIGMA_MIN, smax=SIGMA_MAX, rho=RHO):
    # CM section 3 / EDM eq. 5, i = 1..N ascending.
    a, b = smin ** (1 / rho), smax ** (1 / rho)
    return [(a + (i - 1) / (n - 1) * (b - a)) ** rho for i in range(1, n + 1)]


def cm_n(k, K, s0=2, s1=150):
    # CM Appendix C: N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1
    return math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0 ** 2) + s0 ** 2) - 1) + 1


def cm_mu(k, K, s0=2, mu0=0.9):
    return math.exp(s0 * math.log(mu0) / cm_n(k, K))


def ict_n(k, K, s0=10, s1=1280):
    # iCT section 3.4: N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1))
    kp = math.floor(K / (math.log2(math.floor(s1 / s0)) + 1))
    return min(s0 * 2 ** math.floor(k / kp), s1) + 1


def ect_stage(k, K, stages=8):
    # ECT (Geng et al. 2024) halves the gap every `double` ticks: stage = tick // double, here the run's
    # K steps in `stages` equal periods, the last period kept to the end.
    return min(k // max(K // stages, 1), stages - 1)


def ect_r(t, stage, q=2.0, k=8.0, b=1.0):
    # ECT section 3 (its code's t_to_r_sigmoid): r = t (1 - q^-(s+1) n(t)), n(t) = 1 + k sigmoid(-b t),
    # clamped at 0; sigmoid(-b t) written as 1 / (1 + e^(b t)).
    n_t = 1.0 + k / (1.0 + math.exp(b * t))
    return max(0.0, t * (1.0 - n_t / q ** (stage + 1)))


def lognormal_probs(sigmas, p_mean=-1.1, p_std=2.0):
    # iCT section 3.5
    cdf = lambda s: math.erf((math.log(s) - p_mean) / (math.sqrt(2) * p_std))
    w = [cdf(sigmas[i + 1]) - cdf(sigmas[i]) for i in range(len(sigmas) - 1)]
    t = sum(w)
    return [v / t for v in w]


def scalings(kind, sigma, sd=SIGMA_DATA, smin=SIGMA_MIN):
    if kind == "edm":  # EDM Table 1
        return dict(c_skip=sd**2 / (sigma**2 + sd**2), c_out=sigma * sd / math.sqrt(sigma**2 + sd**2),
                    c_in=1 / math.sqrt(sigma**2 + sd**2), c_noise=0.25 * math.log(sigma))
    if kind == "consistency":  # CM Appendix C
        return dict(c_skip=sd**2 / ((sigma - smin) ** 2 + sd**2), c_out=sd * (sigma - smin) / math.sqrt(sd**2 + sigma**2),
                    c_in=1 / math.sqrt(sigma**2 + sd**2), c_noise=0.25 * math.log(sigma))
    # TrigFlow (sCM eq. 6) in EDM coordinates: t = atan(sigma/sd), x_t = cos t x_sigma.
    t = math.atan2(sigma, sd)
    return dict(c_skip=math.cos(t) ** 2, c_out=-math.sin(t) * sd, c_in=math.cos(t) / sd, c_noise=t)


K = 400_000
out = {
    "source": "tests/golden/make_golden.py (Python math, float64, from the papers' formulas)",
    "karras": {str(n): karras(n) for n in (2, 11, 18, 151)},
    "cm_curriculum": [{"k": k, "K": K, "n": cm_n(k, K), "mu": cm_mu(k, K)} for k in (0, 1, 1000, 50_000, 200_000, 399_999, 400_000)],
    "ict_curriculum": [{"k": k, "K": K, "n": ict_n(k, K)} for k in (0, 1, 49_999, 50_000, 100_000, 250_000, 349_999, 350_000, 399_999)],
    "lognormal_probs_11": lognormal_probs(karras(11)),
    "ect_stage": [{"k": k, "K": 1200, "stages": 8, "stage": ect_stage(k, 1200)} for k in (0, 149, 150, 599, 600, 1049, 1050, 1199)]
    + [{"k": k, "K": 10, "stages": 8, "stage": ect_stage(k, 10, 8)} for k in (0, 1, 7, 9)],
    "ect_r": [{"t": t, "stage": s, "r": ect_r(t, s)} for s in (0, 1, 3, 7) for t in (0.002, 0.1, 0.821, 1.9, 2.0, 5.0, 80.0)]
    + [{"t": 1.0, "stage": 2, "q": 4.0, "k": 3.0, "b": 0.5, "r": ect_r(1.0, 2, 4.0, 3.0, 0.5)}],
    "scalings": [dict(kind=kind, sigma=s, **scalings(kind, s)) for kind in ("edm", "consistency", "trigflow")
                 for s in (0.002, 0.01, 0.5, 0.821, 10.0, 80.0)],
    "pseudo_huber_c": {"2": 0.00054 * math.sqrt(2), "3072": 0.00054 * math.sqrt(3072)},
}
print(json.dumps(out, indent=1))
