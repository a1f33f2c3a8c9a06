#!/usr/bin/env python3
"""The independent side of the `hermes fit-mix` tests (docs/search.md, the contract).

It makes a swarm for a known mixing law, and judges what `hermes fit-mix` proposed against the
true optimum that SciPy finds on the true law. Nothing here reads hermes' code; it follows the
contract as written. Usage:

    fit_mix_reference.py make DIR [--seed S] [--runs N] [--noise SIGMA] [--pin] [--missing M]
                              [--outliers O]
    fit_mix_reference.py check DIR OUT [--kl KL] [--objective objective.toml]

`make` writes DIR/swarm/ (swarm.json, ratios.csv, priors.json, variants/<name>.toml as
`hermes swarm` does), DIR/metrics.csv (every run but M measured, with Gaussian noise) and
DIR/truth.json (the law's c, k, t per metric). O early runs get 0.5 added to the first metric:
proxies that went wrong, which a robust fit must not follow. Buckets are labels at depth 2 under parents
"2" (11 children, so "2.10" sorts after "2.9"), "3" and "10"; sizes are made up; the spec
caps each bucket at 3 times its prior (max_epochs 3, the budget the whole pool), so caps bind.
With --pin the parents' totals are pinned away from their prior shares and only the split
within each parent varies.

`check` prints one JSON object of figures for the Rust test to judge: per metric the held-out
Spearman (scipy.stats.spearmanr of the fitted law's predictions, from fit.json, against the
measured values) and hermes' own; the true objective at the prior, at the proposal and at
SciPy's optimum under the same constraints; the share of the possible improvement the proposal
achieves; with --kl the same for objective + kl * KL(w || p); how far caps, pins and sums are
off; and whether optimal.toml reads back (tomllib) as the base spec with explicit weights.
"""
import argparse
import json
import math
import pathlib
import tomllib
import warnings

import numpy as np
from scipy import optimize, stats

PARENTS = [("2", 11), ("3", 4), ("10", 3)]
METRICS = ["bpb_web", "bpb_code", "err_qa"]
MAX_EPOCHS = 3
# The swarm's Dirichlet strengths (log-uniform) and minimum weight.
STRENGTHS = (20.0, 200.0)
MIN_WEIGHT = 0.002


def labels():
    return [f"{p}.{c}" for p, n in PARENTS for c in range(1, n + 1)]


def parent(label):
    return label.split(".")[0]


def cap_within(w, caps, idx):
    """Rule 3 on one set of buckets: weights above their cap go to the cap, and the excess is
    spread over the uncapped ones with weight, in proportion to their weights, repeatedly."""
    capped = set()
    while True:
        excess = 0.0
        for i in idx:
            if i not in capped and w[i] > caps[i]:
                excess += w[i] - caps[i]
                w[i] = caps[i]
                capped.add(i)
        if excess <= 0:
            return w
        open_ = [i for i in idx if i not in capped and w[i] > 0]
        mass = sum(w[i] for i in open_)
        if mass <= 0:
            return w
        for i in open_:
            w[i] += excess * w[i] / mass


def make(args):
    rng = np.random.default_rng(args.seed)
    out = pathlib.Path(args.dir)
    swarm = out / "swarm"
    (swarm / "variants").mkdir(parents=True, exist_ok=True)
    labs = labels()
    b = len(labs)
    sizes = np.round(np.exp(rng.normal(8.0, 0.8, b))).astype(int)
    budget = int(sizes.sum())
    prior = sizes / sizes.sum()
    caps = MAX_EPOCHS * sizes / budget
    groups = {}
    for i, l in enumerate(labs):
        groups.setdefault(parent(l), []).append(i)
    pin = None
    if args.pin:
        # Pinned totals away from the prior's parent shares: halfway to 0.45, 0.35, 0.20 (the
        # caps, 3 times the prior, hold that unless a target is 5 times its prior share).
        target = {"2": 0.45, "3": 0.35, "10": 0.20}
        totals = {k: 0.5 * float(prior[idx].sum()) + 0.5 * target[k] for k, idx in groups.items()}
        pin = {"depth": 1, "weights": totals}
    (min_s, max_s), min_w = STRENGTHS, MIN_WEIGHT
    runs, strengths = [], []
    for i in range(args.runs):
        s = math.exp(rng.uniform(math.log(min_s), math.log(max_s)))
        strengths.append(s)
        if pin is None:
            parts = [(list(range(b)), 1.0)]
        else:
            parts = [(groups[k], pin["weights"][k]) for k in groups]
        w = np.zeros(b)
        for idx, total in parts:
            p = prior[idx] / prior[idx].sum()
            x = rng.dirichlet(s * p)
            x[x < min_w] = 0.0
            x = x / x.sum() * total
            w[idx] = x
            w = cap_within(w, caps, idx)
        runs.append(w)
    spec = {
        "seed": 0,
        "depth": 2,
        "budget": float(budget),
        "size": "docs",
        "max_epochs": MAX_EPOCHS,
        "stage1": {"method": "natural"},
        "stage2": None,
    }
    record = {
        "name": "swarm",
        "seed": args.seed,
        "variants": args.runs,
        "min_strength": min_s,
        "max_strength": max_s,
        "minimum_weight": min_w,
        "spec": spec,
        "buckets": labs,
        "sizes": [float(x) for x in sizes],
        "prior": [float(x) for x in prior],
        "caps": [float(x) for x in caps],
        "pin": pin,
        "strengths": strengths,
    }
    (swarm / "swarm.json").write_text(json.dumps(record, indent=2))
    (swarm / "priors.json").write_text(
        json.dumps(
            {
                "depth": 2,
                "size": "docs",
                "relative_sizes": dict(zip(labs, map(float, prior))),
                "token_counts": dict(zip(labs, map(float, sizes))),
            },
            indent=2,
        )
    )
    names = [f"swarm-{i:04d}" for i in range(args.runs)]
    lines = ["run,name,index," + ",".join(labs)]
    for i, (n, w) in enumerate(zip(names, runs)):
        lines.append(f"{n},{n},{i}," + ",".join(repr(float(x)) for x in w))
        body = "".join(f'"{l}" = {float(x)!r}\n' for l, x in zip(labs, w))
        (swarm / "variants" / f"{n}.toml").write_text(
            f'seed = 0\ndepth = 2\nbudget = {budget}\nmax_epochs = {MAX_EPOCHS}\n\n'
            f'[stage1]\nmethod = "explicit"\n\n[stage1.weights]\n{body}'
        )
    (swarm / "ratios.csv").write_text("\n".join(lines) + "\n")

    # The true laws: L_m(w) = c + k exp(t . w).
    truth = {}
    for m in METRICS:
        t = rng.normal(0.0, 2.0, b)
        truth[m] = {
            "c": float(rng.uniform(0.8, 2.0)),
            "k": float(rng.uniform(0.3, 1.0)),
            "t": [float(x) for x in t],
        }
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    measured = [i for i in range(args.runs) if i not in set(range(5, 5 + 7 * args.missing, 7))]
    rows = ["name,run,index," + ",".join(METRICS)]
    # Outliers: proxies that went wrong on the first metric (early runs, so fitted ones).
    bad = set(measured[2 : 2 + 9 * args.outliers : 9])
    for i in measured:
        vals = [
            law(truth[m], runs[i]) + rng.normal(0.0, args.noise) for m in METRICS
        ]
        if i in bad:
            vals[0] += 0.5
        rows.append(f"{names[i]},{names[i]},{i}," + ",".join(f"{v:.9f}" for v in vals))
    (out / "metrics.csv").write_text("\n".join(rows) + "\n")


def law(l, w):
    return l["c"] + l["k"] * math.exp(float(np.dot(l["t"], w)))


def check(args):
    # trust-constr's quasi-Newton notes on flat steps are not failures.
    warnings.simplefilter("ignore")
    base = pathlib.Path(args.dir)
    out = pathlib.Path(args.out)
    record = json.loads((base / "swarm" / "swarm.json").read_text())
    truth = json.loads((base / "truth.json").read_text())
    fit = json.loads((out / "fit.json").read_text())
    optimal = json.loads((out / "optimal.json").read_text())
    labs = record["buckets"]
    p = np.array(record["prior"])
    caps = np.array(record["caps"])
    b = len(labs)
    o = {m: 1.0 for m in METRICS}
    if args.objective:
        listed = tomllib.loads(pathlib.Path(args.objective).read_text())
        o = {m: float(listed.get(m, 0.0)) for m in METRICS}
    pin = record["pin"]
    groups = {}
    for i, l in enumerate(labs):
        groups.setdefault(parent(l) if pin else "", []).append(i)
    totals = {k: (pin["weights"][k] if pin else 1.0) for k in groups}
    # The prior the proposal is compared with: p, rescaled within each pinned parent.
    start = p.copy()
    for k, idx in groups.items():
        start[idx] = p[idx] / p[idx].sum() * totals[k]

    fitted = {
        m: {"c": f["c"], "k": f["k"], "t": [f["t"][l] for l in labs]}
        for m, f in fit["metrics"].items()
    }

    def objective(laws, w):
        return sum(o[m] * law(laws[m], w) for m in METRICS)

    def gradient(laws, w):
        g = np.zeros(b)
        for m in METRICS:
            l = laws[m]
            g += o[m] * l["k"] * math.exp(float(np.dot(l["t"], w))) * np.array(l["t"])
        return g

    def true_obj(w):
        return objective(truth, w)

    def kl(w):
        w = np.asarray(w)
        pos = w > 0
        return float(np.sum(w[pos] * np.log(w[pos] / p[pos])))

    def solve(with_kl, laws):
        lo = 1e-12 if with_kl > 0 else 0.0

        def f(w):
            return objective(laws, w) + (with_kl * kl(np.maximum(w, lo)) if with_kl > 0 else 0.0)

        def g(w):
            gr = gradient(laws, w)
            if with_kl > 0:
                gr = gr + with_kl * (np.log(np.maximum(w, lo) / p) + 1.0)
            return gr

        cons = []
        for k, idx in groups.items():
            a = np.zeros(b)
            a[idx] = 1.0
            cons.append({"type": "eq", "fun": lambda w, a=a, t=totals[k]: a @ w - t,
                         "jac": lambda w, a=a: a})
        x0 = np.minimum(start, caps)
        best = None
        for method in ("SLSQP", "trust-constr"):
            if method == "SLSQP":
                r = optimize.minimize(f, x0, jac=g, method="SLSQP",
                                      bounds=[(lo, c) for c in caps], constraints=cons,
                                      options={"ftol": 1e-15, "maxiter": 5000})
            else:
                lin = optimize.LinearConstraint(
                    np.array([c["jac"](x0) for c in cons]),
                    [totals[k] for k in groups], [totals[k] for k in groups])
                r = optimize.minimize(f, x0, jac=g, method="trust-constr",
                                      bounds=optimize.Bounds(np.full(b, lo), caps),
                                      constraints=[lin],
                                      options={"gtol": 1e-12, "xtol": 1e-14, "maxiter": 5000})
            w = np.clip(r.x, lo, caps)
            if best is None or f(w) < f(best):
                best = w
        return best, f

    w_hat = np.array([optimal["weights"][l] for l in labs])
    w_star, _ = solve(0.0, truth)
    # The optimiser alone: SciPy on the fitted laws, against hermes' own minimum of them.
    w_fit, f_fit = solve(args.kl, fitted)
    f_prior, f_hat, f_star = true_obj(start), true_obj(w_hat), true_obj(w_star)
    result = {
        "true_prior": f_prior,
        "true_proposal": f_hat,
        "true_optimum": f_star,
        "improvement": (f_prior - f_hat) / (f_prior - f_star),
        "weights_sum": float(w_hat.sum()),
        "min_weight": float(w_hat.min()),
        "cap_excess": float(np.max(w_hat - caps)),
        "caps_binding": int(np.sum(np.abs(w_star - caps) < 1e-6)),
        "pin_error": max(abs(float(w_hat[idx].sum()) - totals[k]) for k, idx in groups.items()),
        "buckets_in_code_order": list(fit["buckets"]) == labs
        and all(list(fit["metrics"][m]["t"]) == labs for m in METRICS)
        and list(optimal["weights"]) == labs,
        "metrics_in_file_order": list(fit["metrics"]) == METRICS,
        "missing": fit["runs"]["missing"],
        "fitted_optimum": f_fit(w_fit),
        "hermes_penalised": optimal["penalised"],
        "hermes_at_fitted": f_fit(np.maximum(w_hat, 1e-12) if args.kl > 0 else w_hat),
    }
    if args.kl > 0:
        w_kl, g_kl = solve(args.kl, truth)
        g_prior, g_hat, g_star = g_kl(start), g_kl(np.maximum(w_hat, 1e-12)), g_kl(w_kl)
        result.update({
            "penalised_prior": g_prior,
            "penalised_proposal": g_hat,
            "penalised_optimum": g_star,
            "penalised_gap": (g_hat - g_star) / (g_prior - g_star),
        })

    # Held-out runs: the last K by index among the measured ones.
    metrics = {}
    ratios = [l.split(",") for l in (base / "swarm" / "ratios.csv").read_text().split()]
    head = ratios[0]
    w_of = {r[0]: np.array([float(r[head.index(l)]) for l in labs]) for r in ratios[1:]}
    mrows = [l.split(",") for l in (base / "metrics.csv").read_text().split()]
    mhead = mrows[0]
    held = fit["held_out"]
    for m in METRICS:
        fm = fit["metrics"][m]
        t = np.array([fm["t"][l] for l in labs])
        measured = {r[mhead.index("run")]: float(r[mhead.index(m)]) for r in mrows[1:]}
        pred = [fm["c"] + fm["k"] * math.exp(float(t @ w_of[r])) for r in held]
        y = [measured[r] for r in held]
        metrics[m] = {
            "spearman": float(stats.spearmanr(pred, y).statistic) if len(held) > 1 else None,
            "mae": float(np.mean(np.abs(np.array(pred) - np.array(y)))) if held else None,
            "hermes": fm["holdout"],
            "r2": fm["r2"],
        }
    result["metrics"] = metrics
    all_runs = sorted(int(r[mhead.index("index")]) for r in mrows[1:])
    k = len(held)
    result["held_out_are_last"] = [f"swarm-{i:04d}" for i in all_runs[len(all_runs) - k:]] == held

    spec = tomllib.loads((out / "optimal.toml").read_text())
    tw = spec["stage1"]["weights"]
    base_spec = {k: v for k, v in record["spec"].items() if k != "stage1" and v is not None}
    result["toml"] = {
        "method": spec["stage1"]["method"],
        "sum": float(sum(tw.values())),
        "same_weights": set(tw) == set(labs)
        and all(tw[l] == optimal["weights"][l] for l in labs),
        "same_base": all(spec.get(k) == v for k, v in base_spec.items())
        and set(spec) == set(base_spec) | {"stage1"},
    }
    print(json.dumps(result, indent=2))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--runs", type=int, default=80)
    m.add_argument("--noise", type=float, default=0.003)
    m.add_argument("--missing", type=int, default=0)
    m.add_argument("--outliers", type=int, default=0)
    m.add_argument("--pin", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("out")
    c.add_argument("--kl", type=float, default=0.0)
    c.add_argument("--objective")
    args = ap.parse_args()
    make(args) if args.cmd == "make" else check(args)


if __name__ == "__main__":
    main()
