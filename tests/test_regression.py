"""The regression tools of Homework 1 on their own: the stacked trainer trains like separate networks, the folds
are what they claim, the one-standard-error rule and the baselines behave, and the simulated family is fair."""
import numpy as np
import pytest
from build_notebooks import parse_cells, shared_helpers_namespace
from conftest import ROOT


@pytest.fixture(scope="module")
def r():
    ns = shared_helpers_namespace({"NUM_THREADS": 1})
    setup = [c for c in parse_cells(ROOT / "src" / "homework1_supervised.py") if c.cell_type == "code"][0]
    exec(setup.source, ns)  # the imports (GaussianProcessRegressor, CubicHermiteSpline, ...)
    for cell in parse_cells(ROOT / "src" / "hw1_regression_tools.py"):
        if cell.cell_type == "code":
            exec(cell.source, ns)
    return ns


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "momentum", "nesterov", "rmsprop", "sgd"])
def test_stacked_members_train_like_separate_networks(r, optimizer):
    output_diff, loss_diff = r["check_stacked_equals_single"](optimizer, steps=25)
    assert output_diff < 1e-5 and loss_diff < 1e-5


def test_stop_at_keeps_each_members_own_step(r):
    """Member 0 stops at step 5, member 1 at step 12; plain SGD keeps no state, so the reference can train 5 steps,
    copy member 0, then train 7 more steps and copy member 1."""
    torch = r["torch"]
    torch.manual_seed(0)
    X, Y, mask = torch.randn(2, 30), torch.randn(2, 30), torch.ones(2, 30)

    def fresh():
        torch.manual_seed(1)
        return r["StackedMLP"]([6, 6], 1, "tanh")

    stopped = fresh()
    r["fit_stacked"](stopped, X, Y, mask, steps=12, optimizer="sgd", lr=0.1, eval_every=1,
                     stop_at=torch.tensor([5, 12]))
    reference = fresh()
    r["fit_stacked"](reference, X, Y, mask, steps=5, optimizer="sgd", lr=0.1, eval_every=1)
    at_5 = [p[0].detach().clone() for p in reference.parameters()]
    r["fit_stacked"](reference, X, Y, mask, steps=7, optimizer="sgd", lr=0.1, eval_every=1)
    at_12 = [p[1].detach().clone() for p in reference.parameters()]
    params = list(stopped.parameters())
    assert all(torch.allclose(p[0], a, atol=1e-6) for p, a in zip(params, at_5))
    assert all(torch.allclose(p[1], a, atol=1e-6) for p, a in zip(params, at_12))
    assert not all(torch.allclose(a, b) for a, b in zip(at_5, [p[0] for p in reference.parameters()]))


def test_folds_are_disjoint_covering_and_contiguous(r):
    x = np.sort(np.random.default_rng(0).uniform(-5, 5, 100))
    for k in (2, 3, 4):
        folds = r["regression_folds"](x, k, seed=0)
        assert [f[0] for f in folds] == ["random"] * k + ["block"] * k
        r["check_folds"](x, folds)
        for _, tr, va in folds[k:]:  # each block fold: two runs of consecutive sorted inputs
            runs = np.split(va, np.flatnonzero(np.diff(va) > 1) + 1)
            assert len(runs) == 2 and all(not ((x[tr] > x[run].min()) & (x[tr] < x[run].max())).any()
                                          for run in runs)
        assert 0 in folds[k][2] and 99 in folds[-1][2], "the first and last block folds hold out the two edges"


def test_fold_check_can_fail(r):
    x = np.linspace(-5, 5, 20)
    order = np.arange(20)
    scattered = ("block", np.setdiff1d(order, [0, 5, 10, 15]), np.array([0, 5, 10, 15]))
    with pytest.raises(AssertionError, match="contiguous"):
        r["check_folds"](x, [scattered])
    overlapping = ("random", order, np.array([3]))
    with pytest.raises(AssertionError, match="overlaps"):
        r["check_folds"](x, [overlapping])


def test_one_standard_error_rule(r):
    choose = r["one_se_choice"]
    folds = np.array([[1.0, 2.0, 3.0], [0.9, 1.9, 2.95], [0.5, 1.5, 2.5]])  # smoothest first
    assert choose(folds) == 2, "a candidate better on every fold by far is chosen"
    close = np.array([[1.0, 2.0, 3.0], [0.97, 2.02, 2.99]])
    assert choose(close) == 0, "within one paired standard error, the smoother candidate wins"
    assert choose(np.array([[np.nan] * 3, [1.0, 1.0, 1.0]])) == 1, "a diverged candidate is never chosen"


def test_baselines_recover_a_line_and_a_smooth_curve(r):
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-5, 5, 80))
    xq = np.linspace(-4, 4, 50)
    line = 0.5 * x - 1
    assert np.abs(r["local_linear"](x, line, xq, 0.7) - (0.5 * xq - 1)).max() < 1e-8, "local linear is exact on lines"
    assert np.abs(r["local_linear"](x, line, np.array([40.0]), 0.05)).max() < 1e3, "far away it stays finite"
    y = np.sin(x) + rng.normal(0, 0.1, len(x))
    for name, (candidates, fit_predict) in r["BASELINES"].items():
        best = min(np.mean((fit_predict(x, y, xq, c) - np.sin(xq)) ** 2) for c in candidates)
        assert best < 0.02, name


def test_family_is_fair_and_in_the_course_layout(r):
    for i, (name, (_, f)) in enumerate(r["SIMULATION_FAMILY"].items()):
        assert r["gap_surprise"](f) < 0.25, f"{name} hides a feature in a gap"
        d = r["simulate_regression"](f, seed=i)
        assert len(d["x"]) == len(d["x_test"]) == 100 and not r["in_gaps"](d["x"]).any()
        assert (d["x"] > 2.5).sum() > (d["x"] < -2.5).sum(), "more points towards x = 5"
        assert 0.3 < np.std(d["y"] - f(d["x"])) < 0.7
    hidden_valley = lambda x: 1.5 * np.sin(1.1 * x) + 0.7 * np.cos(2.4 * x + 1)  # noqa: E731
    assert r["gap_surprise"](hidden_valley) > 0.25, "the check catches a valley hidden in a gap"


def test_pipeline_runs_and_returns_every_method(r):
    f = r["SIMULATION_FAMILY"]["cubic"][1]
    data = [dict(r["simulate_regression"](f, seed=0), name="cubic")]
    cfgs = [r["RegressionConfig"](width=8, depth=1), r["RegressionConfig"](width=8, depth=1, weight_decay=0.1)]
    out = r["regression_pipeline"](data, cfgs, r["TRUTH_GRID"], k=2, steps=50, n_seeds=2, n_final=2, seed=0)
    assert set(out["methods"]) == {"network", *r["BASELINES"]}
    for name, m in out["methods"].items():
        assert m["members"].shape[0] == 1 and m["members"].shape[-1] == len(r["TRUTH_GRID"]), name
        assert m["cv"].shape == (1, 4) and np.isfinite(m["cv"]).all(), name
    members = out["methods"]["network"]["members"]  # (data sets, committee members, points)
    again = r["predict_final"](out["final"], r["TRUTH_GRID"])  # one entry per committee member
    assert members.shape[:2] == (1, 2) and np.allclose(again.reshape(members.shape), members, atol=1e-5)
    assert all(cfg in out["configs"] for cfg in out["methods"]["network"]["committee"][0])
