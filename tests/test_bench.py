"""``fastloss bench``'s throughput rows at toy sizes: every implementation is timed, and
the baselines compute what fastloss computes (timings themselves are not checked)."""
import numpy as np
import pytest

import fastloss as fl
from fastloss import peers
from fastloss.bench import bandwidth, throughput


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")   # kl_div's, PyTorch's
def test_every_loss_and_method_gets_a_row_with_its_timings():
    rows = throughput.measure(["mse", "kl_div"], n=3000, repeats=1, quick_baselines=True)
    assert [(r.loss, r.method) for r in rows] == [
        ("mse", "value"), ("mse", "value_and_grad"),
        ("kl_div", "value"), ("kl_div", "value_and_grad")]
    for r in rows:
        assert r.seconds["fastloss"] > 0 and r.seconds["numpy"] > 0
        assert r.bytes_moved == (2 if r.method == "value" else 3) * 4 * 3000
        assert r.bandwidth["read"] > 0 and r.bandwidth["read_write"] > 0
        assert r.speedup("numpy") == r.seconds["numpy"] / r.seconds["fastloss"]


@pytest.mark.parametrize("name", ["mse", "mae", "poisson_nll"])
def test_the_sklearn_runners_return_the_mean_and_the_gradient(name, rng):
    found = peers.sklearn_loss(name)
    if found is None:
        pytest.skip("scikit-learn is not installed")
    sk, factor = found
    y = rng.random(2000).astype(np.float32) * 3
    p = rng.standard_normal(2000).astype(np.float32)
    value, value_and_grad = throughput._sklearn_runners(name, y, p, 1)
    mean, grad = value_and_grad()
    loss = fl.get(name)
    np.testing.assert_allclose(value(), sk(y, p), rtol=1e-6)        # what __call__ gives
    np.testing.assert_allclose(mean, value(), rtol=1e-6)
    if name != "poisson_nll":       # scikit-learn's Poisson loss drops terms free of p
        np.testing.assert_allclose(factor * mean, loss(y, p), rtol=1e-5)
    np.testing.assert_allclose(factor * grad, loss.grad(y, p, reduction="none"),
                               rtol=1e-5, atol=1e-6)


def test_quick_bench_runs_end_to_end_and_says_what_it_shortened(capsys):
    """``fastloss bench --quick`` (the README's first command), on two losses and small arrays."""
    from fastloss.cli import main
    assert main(["bench", "--quick", "--no-peers", "--losses", "mse,log_cosh", "--n", "200000"]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.startswith(("mse ", "log_cosh "))]
    assert sorted(rows) == ["log_cosh", "log_cosh", "mse", "mse"]   # value and value_and_grad
    assert "(--quick: NumPy timed on the first n/10 elements, its times scaled to n)" in out
    assert "new custom loss in a fresh process: not measured with --quick" in out
    assert "start-up: import fastloss" in out and "cross_entropy (1024, 32000)" in out
    assert "cross_entropy (250000, 10)" in out
    import numba
    header = next(line for line in out.splitlines() if line.startswith("fastloss bench: n ="))
    assert header.endswith(f"threads (Numba's {numba.threading_layer()} threading layer)")


def test_the_custom_losses_compared_compute_what_their_built_ins_do(rng):
    """custom.measure's pairs are the same arithmetic (else its ratios mean nothing), and
    each method of each is timed."""
    from fastloss.bench import custom
    results = custom.measure(n=3000, repeats=1)
    assert sorted(results) == sorted(custom.PAIRS)
    for (name, builtin), times in results.items():
        assert sorted(times) == ["value", "value_and_grad"]
        assert all(t > 0 for pair in times.values() for t in pair)
        y, p = rng.standard_normal(500), rng.standard_normal(500)
        a, b = fl.get(name), fl.get(builtin)
        np.testing.assert_allclose(a(y, p), b(y, p), rtol=1e-12)
        np.testing.assert_allclose(a.value_and_grad(y, p)[1], b.value_and_grad(y, p)[1],
                                   rtol=1e-12)


@pytest.mark.parametrize("argv", [["bench", "--n", "0"], ["bench", "--n", "-5"],
                                  ["bench", "--threads", "0"], ["bench", "--n", "2.5"],
                                  ["score", "mse", "--y-true", "a.npy", "--y-pred", "b.npy",
                                   "--threads", "0"],
                                  ["compile", "--workers", "0"]])
def test_counts_below_one_are_refused_not_ignored(argv, capsys):
    """--n 0 and --threads 0 used to be read as 'not given' (falsy) and --n -5 to crash."""
    from fastloss.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "must be a whole number >= 1" in capsys.readouterr().err


def test_counts_may_be_written_as_floats_or_with_underscores():
    from fastloss.cli import _count
    assert (_count("1e7"), _count("10_000_000"), _count("12")) == (10_000_000, 10_000_000, 12)


def test_the_adapter_rows_time_every_installed_trainer():
    """``fastloss bench --adapters`` on small inputs: a row per case of each library installed,
    each time positive (the multiclass objective's included)."""
    pytest.importorskip("xgboost")
    from fastloss.bench import adapters
    rows = adapters.measure(n=20_000, repeats=1)
    cases = {(lib, case) for lib, case, *_ in rows}
    assert ("xgboost", "softmax objective (2e+03, 10)") in cases
    for lib, case, *times in rows:
        assert any(t is not None for t in times), case
        assert all(t is None or 0 < t < 60 for t in times), (case, times)
    assert adapters.table(rows).count("\n") == len(rows)


def test_the_bandwidth_probes_read_and_write_the_arrays_they_are_given():
    """The probes beside a loss stream its own arrays (so that both find the caches in
    the same state), and count the bytes of those arrays."""
    rng = np.random.default_rng(3)
    a, c = rng.random(1000, dtype=np.float32), rng.random(1000, dtype=np.float32)
    out = np.zeros(1000, np.float32)
    beside = bandwidth.Beside(a, c, out)
    read2, read3, triad = beside.runs
    np.testing.assert_allclose(read2(), (a.astype(np.float64) + c).sum(), rtol=1e-5)
    triad()
    np.testing.assert_allclose(out, a + np.float32(1.5) * c, rtol=1e-6)
    np.testing.assert_allclose(read3(), (a.astype(np.float64) + c + out).sum(), rtol=1e-5)
    rates = beside.rates([8000 / 1e9, 24000 / 1e9, 6000 / 1e9])    # 1, 0.5 and 2 GB/s
    assert rates["read"] == pytest.approx(1.0) and rates["read_write"] == pytest.approx(2.0)
    alone = bandwidth.Beside(a, c)
    assert len(alone.runs) == 1 and alone.rates([4000 / 1e9])["read"] == pytest.approx(2.0)


def test_best_of_rounds_times_each_call_in_turn_and_keeps_each_ones_best(monkeypatch):
    """The bandwidth probes and the kernel whose share they give are timed in the same
    rounds (in turn, each timed call right after an untimed one of the same function),
    and each keeps its own best time."""
    clock = [0.0]
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: clock[0])
    durations = {"probe": [9.0, 6.0, 1.0, 4.0, 1.0, 5.0],
                 "kernel": [7.0, 8.0, 1.0, 3.0, 1.0, 2.0]}
    calls = []

    def timed(name):
        def run():
            clock[0] += durations[name][sum(c == name for c in calls)]
            calls.append(name)
        return run

    best = throughput.best_of_rounds([timed("probe"), timed("kernel")], 3)
    assert calls == ["probe", "probe", "kernel", "kernel"] * 3
    assert best == (4.0, 2.0)       # the untimed calls (9, 1, 1 and 7, 1, 1) are not counted
