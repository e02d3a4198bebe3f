"""`fastloss score`: files streamed in chunks give the in-memory value; mistakes exit 2."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastloss as fl
from fastloss.cli import main
from fastloss.score import score

from .conftest import sample, weights


def run_cli(capsys, *args):
    code = main(["score", *args])
    out, err = capsys.readouterr()
    return code, out, err


def rel_close(actual, expected, rtol=1e-12):
    assert actual == pytest.approx(expected, rel=rtol, abs=1e-300), (actual, expected)


@pytest.fixture
def npy_pair(tmp_path, rng):
    y, p = sample("huber", 100_003, rng)
    w = weights(y.size, rng)
    paths = {}
    for name, a in (("y", y), ("p", p.astype(np.float32)), ("w", w)):
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], a)
    return paths, y, p.astype(np.float32), w


@pytest.mark.parametrize("chunk_rows", [None, 1, 4096, 99_999])
def test_npy_json_output_matches_the_in_memory_call(npy_pair, capsys, chunk_rows):
    paths, y, p, w = npy_pair
    if chunk_rows == 1:                          # one row per chunk: keep it short
        paths = dict(paths)
        for k, a in (("y", y[:500]), ("p", p[:500]), ("w", w[:500])):
            np.save(paths[k], a)
        y, p, w = y[:500], p[:500], w[:500]
    args = ["huber", "--y-true", paths["y"], "--y-pred", paths["p"], "--sample-weight",
            paths["w"], "--param", "delta=0.5", "--json"]
    if chunk_rows:
        args += ["--chunk-rows", str(chunk_rows)]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    result = json.loads(out)
    rel_close(result["value"], fl.huber(y, p, sample_weight=w, delta=0.5))
    assert result["count"] == y.size
    rel_close(result["weight_sum"], float(np.sum(w)))
    assert result["seconds"] > 0 and result["throughput"] > 0
    assert result["params"] == {"delta": 0.5}


def test_several_losses_from_one_read(npy_pair, capsys):
    paths, y, p, w = npy_pair
    code, out, err = run_cli(capsys, "mse,mae,log_cosh", "--y-true", paths["y"], "--y-pred",
                             paths["p"], "--sample-weight", paths["w"], "--chunk-rows", "30000",
                             "--json")
    assert code == 0, err
    value = json.loads(out)["value"]
    assert set(value) == {"mse", "mae", "log_cosh"}
    for name, v in value.items():
        rel_close(v, fl.get(name)(y, p, sample_weight=w))
    code, out, err = run_cli(capsys, "mse,mae", "--y-true", paths["y"], "--y-pred", paths["p"],
                             "--quiet")
    lines = dict(line.split() for line in out.splitlines())
    rel_close(float(lines["mae"]), fl.mae(y, p))
    code, out, err = run_cli(capsys, "mse,huber,pinball", "--y-true", paths["y"], "--y-pred",
                             paths["p"], "--param", "huber.delta=2", "--param",
                             "pinball.quantile=0.9", "--json")
    assert code == 0, err
    value = json.loads(out)["value"]
    rel_close(value["mse"], fl.mse(y, p))
    rel_close(value["huber"], fl.huber(y, p, delta=2.0))
    rel_close(value["pinball"], fl.pinball(y, p, quantile=0.9))
    code, out, err = run_cli(capsys, "huber", "--y-true", paths["y"], "--y-pred", paths["p"],
                             "--param", "huber.delta=2", "--quiet")
    assert code == 0, err
    rel_close(float(out), fl.huber(y, p, delta=2.0))
    for args, message in (
            (["mse,huber", "--param", "delta=2"], "name its loss, as in huber.delta"),
            (["mse,huber", "--param", "mae.delta=2"], "'mae' is not among the losses scored"),
            (["huber", "--param", "mse.delta=2"], "'mse' is not the loss scored"),
            (["mse,huber", "--param", "huber.delta=-1"], "delta"),
            (["mse,huber", "--param", "huber.beta=1"], "beta")):
        code, out, err = run_cli(capsys, args[0], "--y-true", paths["y"], "--y-pred", paths["p"],
                                 *args[1:])
        assert code == 2 and message in err and out == "", (args, err)


def test_plain_output_and_sum(npy_pair, capsys):
    paths, y, p, _ = npy_pair
    code, out, err = run_cli(capsys, "mse", "--y-true", paths["y"], "--y-pred", paths["p"],
                             "--reduction", "sum", "--quiet")
    assert code == 0 and err == ""
    rel_close(float(out), fl.mse(y, p, reduction="sum"))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_members(tmp_path, rng, capsys, compressed):
    y, p = sample("log_cosh", 50_000, rng)
    path = str(tmp_path / "data.npz")
    (np.savez_compressed if compressed else np.savez)(path, truth=y, pred=p)
    code, out, err = run_cli(capsys, "log_cosh", "--y-true", f"{path}:truth", "--y-pred",
                             f"{path}:pred", "--chunk-rows", "7777", "--json")
    assert code == 0, err
    rel_close(json.loads(out)["value"], fl.log_cosh(y, p))


def test_cross_entropy_from_npy_logits_and_csv_labels(tmp_path, rng, capsys):
    pytest.importorskip("pyarrow")
    N, C = 5000, 6
    logits = rng.standard_normal((N, C)).astype(np.float32)
    labels = rng.integers(0, C, N)
    np.save(tmp_path / "logits.npy", logits)
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{i},{t}\n"
                                                                 for i, t in enumerate(labels)))
    code, out, err = run_cli(capsys, "cross_entropy", "--y-true",
                             f"{tmp_path / 'labels.csv'}:label", "--y-pred",
                             str(tmp_path / "logits.npy"), "--param", "label_smoothing=0.1",
                             "--chunk-rows", "999", "--json")
    assert code == 0, err
    result = json.loads(out)
    rel_close(result["value"], fl.cross_entropy(labels, logits, label_smoothing=0.1))
    assert result["count"] == N


def test_parquet_columns_and_list_columns(tmp_path, rng, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    y, p = sample("binary_cross_entropy_with_logits", 30_000, rng)
    w = weights(y.size, rng)
    path = str(tmp_path / "scores.parquet")
    pq.write_table(pa.table({"y": y, "p": p.astype(np.float32), "w": w}), path,
                   row_group_size=7000)
    code, out, err = run_cli(capsys, "binary_cross_entropy_with_logits", "--y-true",
                             f"{path}:y", "--y-pred", f"{path}:p", "--sample-weight",
                             f"{path}:w", "--chunk-rows", "5000", "--json")
    assert code == 0, err
    rel_close(json.loads(out)["value"],
              fl.binary_cross_entropy_with_logits(y, p.astype(np.float32), sample_weight=w))
    # (N, C) logits as a list column
    logits = rng.standard_normal((3000, 4))
    labels = rng.integers(0, 4, 3000)
    path = str(tmp_path / "ce.parquet")
    pq.write_table(pa.table({"label": labels, "logits": list(logits)}), path,
                   row_group_size=1000)
    code, out, err = run_cli(capsys, "cross_entropy", "--y-true", f"{path}:label", "--y-pred",
                             f"{path}:logits", "--json")
    assert code == 0, err
    rel_close(json.loads(out)["value"], fl.cross_entropy(labels, logits))


def test_progress_bar_when_asked(npy_pair, capsys):
    pytest.importorskip("tqdm")
    paths, y, p, _ = npy_pair
    result = score("mse", paths["y"], paths["p"], progress=True, chunk_rows=10_000)
    err = capsys.readouterr().err
    assert "rows" in err and "scoring" in err
    rel_close(result["value"], fl.mse(y, p))
    score("mse", paths["y"], paths["p"], progress=False)
    assert capsys.readouterr().err == ""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def user_mistakes(tmp_path):
    a, b = str(tmp_path / "a.npy"), str(tmp_path / "b.npy")
    np.save(a, np.arange(10.0))
    np.save(b, np.arange(11.0))
    s = str(tmp_path / "s.npy")
    np.save(s, np.array(["x"] * 10))
    csv = _write(tmp_path, "t.csv", "y,p\n1,2\n3,hello\n")
    short_csv = _write(tmp_path, "short.csv", "y\n" + "1\n" * 9)
    return {
        "missing file": ["mse", "--y-true", str(tmp_path / "nope.npy"), "--y-pred", a],
        "mismatched lengths": ["mse", "--y-true", a, "--y-pred", b],
        "csv shorter than npy": ["mse", "--y-true", short_csv, "--y-pred", a],
        "unknown column": ["mse", "--y-true", f"{csv}:nope", "--y-pred", a],
        "non-numeric npy": ["mse", "--y-true", s, "--y-pred", a],
        "non-numeric csv": ["mse", "--y-true", f"{csv}:y", "--y-pred", f"{csv}:p"],
        "npy has no columns": ["mse", "--y-true", f"{a}:x", "--y-pred", a],
        "unknown loss": ["msee", "--y-true", a, "--y-pred", a],
        "bad parameter": ["huber", "--y-true", a, "--y-pred", a, "--param", "delta=-1"],
        "unknown parameter": ["mse", "--y-true", a, "--y-pred", a, "--param", "beta=1"],
        "parameter syntax": ["mse", "--y-true", a, "--y-pred", a, "--param", "beta"],
        "unknown file type": ["mse", "--y-true", _write(tmp_path, "x.txt", "1"), "--y-pred", a],
        "bad chunk rows": ["mse", "--y-true", a, "--y-pred", a, "--chunk-rows", "0"],
        "values outside the domain": ["poisson_nll", "--y-true", _write(
            tmp_path, "neg.csv", "y\n" + "-1\n" * 10), "--y-pred", a],
        "missing argument": ["mse", "--y-true", a],
    }


def test_user_mistakes_exit_2_with_one_line(tmp_path):
    pytest.importorskip("pyarrow")
    for what, args in user_mistakes(tmp_path).items():
        run = subprocess.run([sys.executable, "-m", "fastloss", "score", *args],
                             capture_output=True, text=True, env=_env(), timeout=120)
        assert run.returncode == 2, (what, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], (what, run.stderr)
        assert "Traceback" not in run.stderr, what
        assert run.stdout == "", what


PEAK_RSS = textwrap.dedent("""
    import sys
    from fastloss.cli import main

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1])

    small, large = sys.argv[1:3]
    options = ["--chunk-rows", str(1 << 19), "--quiet"]
    main(["score", "mse", "--y-true", small, "--y-pred", small, *options])   # kernels loaded
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                              # reset the peak resident set (VmHWM)
    before = status("VmRSS")
    main(["score", "mse", "--y-true", large, "--y-pred", large, *options])
    print(before, status("VmHWM"), file=sys.stderr)
""")


def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    rng = np.random.default_rng(1)
    paths = {}
    for label, n in {"small": 1 << 20, "large": 64 << 20}.items():      # 8 and 512 MiB
        paths[label] = str(tmp_path / f"{label}.npy")
        out = np.lib.format.open_memmap(paths[label], mode="w+", dtype=np.float64, shape=(n,))
        for lo in range(0, n, 1 << 22):
            out[lo:lo + (1 << 22)] = rng.standard_normal(min(1 << 22, n - lo))
        out.flush()
        del out
    script = tmp_path / "peak.py"
    script.write_text(PEAK_RSS)
    run = subprocess.run([sys.executable, str(script), paths["small"], paths["large"]],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    before, peak = map(int, run.stderr.split()[-2:])
    assert run.stdout.split() == ["0.0", "0.0"]
    growth_mib = (peak - before) / 1024
    # two chunks of 4 MiB (y_true and y_pred are the same file) and small change,
    # while reading 1 GiB through a memory map
    assert growth_mib < 32, f"peak RSS grew by {growth_mib:.0f} MiB while scoring a 512 MiB file"


def _env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("chunk_rows", ["777", "5000"])
def test_a_glob_of_npy_files_reads_as_one_column(tmp_path, capsys, rng, chunk_rows):
    """Chunks that span files (this crashed the process: a partial chunk outlived its file's
    memory mapping) and files of different dtypes, read in the order of their paths."""
    y, p = sample("log_cosh", 4000, rng)
    cuts = [0, 999, 1000, 2600, 4000]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        np.save(tmp_path / f"y-{i}.npy", y[a:b])
        np.save(tmp_path / f"p-{i}.npy", p[a:b].astype(np.float32 if i % 2 else np.float64))
    expected = fl.log_cosh(y, np.concatenate([p[a:b].astype(np.float32 if i % 2 else np.float64)
                                              for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]))
    code, out, err = run_cli(capsys, "log_cosh", "--y-true", str(tmp_path / "y-*.npy"),
                             "--y-pred", str(tmp_path / "p-*.npy"), "--chunk-rows", chunk_rows,
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    rel_close(result["value"], expected)
    assert result["count"] == 4000


def test_a_partitioned_parquet_directory_reads_as_one_column(tmp_path, capsys, rng):
    """As Spark and Dask write them: part files in key=value subdirectories, a _SUCCESS
    marker beside them."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    y, p = sample("huber", 5000, rng)
    w = weights(5000, rng)
    cuts = [0, 1700, 1701, 5000]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        folder = tmp_path / "scores" / f"day={i // 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"y": y[a:b], "p": p[a:b], "w": w[a:b]}),
                       folder / f"part-{i:05d}.parquet")
    (tmp_path / "scores" / "_SUCCESS").write_text("")
    data = str(tmp_path / "scores")
    code, out, err = run_cli(capsys, "huber", "--y-true", f"{data}:y", "--y-pred", f"{data}:p",
                             "--sample-weight", f"{data}:w", "--chunk-rows", "999", "--json")
    assert code == 0, err
    rel_close(json.loads(out)["value"], fl.huber(y, p, sample_weight=w))
    for args, message in ((["--y-true", str(tmp_path / "nothing-*.npy")], "no file matches"),
                          (["--y-true", str(tmp_path / "empty")], "holds no")):
        (tmp_path / "empty").mkdir(exist_ok=True)
        code, out, err = run_cli(capsys, "huber", *args, "--y-pred", f"{data}:p")
        assert code == 2 and message in err


def test_empty_files_print_nan_and_a_one_line_warning(tmp_path, capsys):
    """Scoring empty files: nan ("mean") or 0.0 ("sum"), exit 0, and the accumulator's
    warning as one line naming the command (it came out as a Python warning quoting
    the console script's own source line)."""
    for name in ("y", "p"):
        np.save(tmp_path / f"{name}.npy", np.zeros(0))
    args = ("mse", "--y-true", str(tmp_path / "y.npy"), "--y-pred", str(tmp_path / "p.npy"))
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and out.strip() == "nan"
    warning_lines = [line for line in err.splitlines() if "warning" in line]
    assert warning_lines == ["fastloss score: warning: mse: the mean is over no data "
                             "(or zero total weight)"], err
    code, out, err = run_cli(capsys, *args, "--reduction", "sum")
    assert code == 0 and float(out) == 0.0 and "warning" not in err
