"""kmemsim.experiments: sweeps (executors, resume, files), the CLI, the five experiments."""

from __future__ import annotations

import csv
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kmemsim import Kernel, KmemsimTypeError, KmemsimValueError
from kmemsim.cli import main
from kmemsim.experiments import (
    EXPERIMENTS,
    ReportRules,
    boehm_table,
    quick_mode,
    read_rows,
    run_experiment,
    run_sweep,
    wilson_interval,
)
from kmemsim.experiments.false_negatives import BOEHM_TABLE1, model_retained
from kmemsim.experiments.sweep import example_trial, trial_seed

# A small slice of a real experiment, used to compare executors.
FP_SLICE = {"cause": ["xor", "page_memory"], "fraction": [0.0, 0.3],
            "annotation": ["none", "not_leak"]}


# ------------------------------------------------------------------ determinism
@pytest.fixture(scope="module")
def serial_rows() -> list[dict[str, Any]]:
    return run_experiment("false_positives", quick=True, trials=2, seed=5, **FP_SLICE).rows


def test_rows_in_canonical_order_with_plain_values(serial_rows):
    assert [(r["point"], r["trial"]) for r in serial_rows] == \
        [(p, t) for p in range(8) for t in range(2)]
    for r in serial_rows:
        assert all(isinstance(v, (int, float, str, bool)) for v in r.values())


def test_process_pool_gives_identical_rows(serial_rows):
    with ProcessPoolExecutor(2) as pool:
        rows = run_experiment("false_positives", quick=True, trials=2, seed=5, executor=pool,
                              **FP_SLICE).rows
    assert rows == serial_rows


def test_dask_local_cluster_gives_identical_rows(serial_rows):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        rows = run_experiment("false_positives", quick=True, trials=2, seed=5,
                              executor=client.get_executor(), **FP_SLICE).rows
    assert rows == serial_rows


def test_seed_changes_rows_and_trial_seeds_are_keyed():
    a = run_sweep(example_trial, {"n": [200]}, trials=3, seed=1).rows
    b = run_sweep(example_trial, {"n": [200]}, trials=3, seed=2).rows
    assert a != b
    # a trial's seed depends on (seed, point, trial) only: re-running one trial alone agrees
    assert example_trial({"n": 200}, trial_seed(1, 0, 2)) == \
        {k: a[2][k] for k in ("hits", "fraction")}


def test_progress_callback_sees_every_trial_and_changes_nothing():
    seen: list[tuple[int, int]] = []
    rows = run_sweep(example_trial, {"n": [10, 20]}, trials=2,
                     progress=lambda d, t: seen.append((d, t))).rows
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert rows == run_sweep(example_trial, {"n": [10, 20]}, trials=2).rows


def test_tqdm_bar_when_installed(capsys):
    pytest.importorskip("tqdm")
    run_sweep(example_trial, {"n": [10]}, trials=3, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err
    assert "trial" in err


def test_plain_progress_line_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import fails: as if not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    run_sweep(example_trial, {"n": [10]}, trials=3, progress=True)
    err = capsys.readouterr().err
    assert "3/3 trials" in err
    assert "trials/s" in err
    assert "ETA" in err


# ------------------------------------------------------------------ resume and files
_FAIL_AT: tuple[int, int] | None = None


def interrupting_trial(params: dict[str, Any], seed: np.random.SeedSequence) -> dict[str, Any]:
    """example_trial, but Ctrl-C arrives during one chosen trial."""
    if _FAIL_AT is not None and (params["n"], seed.spawn_key[1]) == _FAIL_AT:
        raise KeyboardInterrupt
    return example_trial(params, seed)


def test_resume_after_interrupt_loses_and_duplicates_nothing(tmp_path):
    global _FAIL_AT
    grid = {"n": [10, 20, 30]}
    reference = run_sweep(interrupting_trial, grid, trials=3, seed=4).rows
    _FAIL_AT = (20, 1)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(interrupting_trial, grid, trials=3, seed=4, out=tmp_path)
    finally:
        _FAIL_AT = None
    partial = read_rows(tmp_path / "rows.jsonl")
    assert [(r["point"], r["trial"]) for r in partial] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert not (tmp_path / "results.csv").exists()
    calls: list[int] = []
    resumed = run_sweep(interrupting_trial, grid, trials=3, seed=4, out=tmp_path,
                        progress=lambda d, t: calls.append(d))
    assert calls == [5, 6, 7, 8, 9]  # only the five missing trials ran
    assert resumed.rows == reference
    lines = (tmp_path / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 9
    assert len({(json.loads(x)["point"], json.loads(x)["trial"])
                                    for x in lines}) == 9


def test_sweep_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path):
    """A real kill -9 of `kmemsim sweep` mid-run, then the same command again."""
    import os
    import signal
    import subprocess
    import time

    args = [sys.executable, "-m", "kmemsim", "sweep", "stale_stacks", "--quick",
            "--trials", "4", "--calls", "20", "--no-progress"]
    assert main([*args[3:], "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    proc = subprocess.Popen([*args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rows = out / "rows.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if rows.exists() and len(rows.read_bytes().splitlines()) >= 2:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.csv").exists()  # it really stopped mid-sweep
    done_before = len(read_rows(rows))
    assert 2 <= done_before < 8
    assert subprocess.run([*args, "--out", str(out)], env=env, check=False,
                          stdout=subprocess.DEVNULL).returncode == 0
    lines = rows.read_text().splitlines()
    keys = [(json.loads(x)["point"], json.loads(x)["trial"]) for x in lines]
    assert len(keys) == len(set(keys))  # no trial twice
    assert (out / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()


def test_truncated_last_line_is_run_again(tmp_path):
    grid = {"n": [10, 20]}
    full = run_sweep(example_trial, grid, trials=2, out=tmp_path).rows
    path = tmp_path / "rows.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # a kill in the middle of the last write
    assert len(read_rows(path)) == 3
    again = run_sweep(example_trial, grid, trials=2, out=tmp_path)
    assert again.rows == full
    assert len(path.read_text().splitlines()) == 4


def test_more_trials_extend_and_a_different_sweep_is_refused(tmp_path):
    run_sweep(example_trial, {"n": [10]}, trials=2, out=tmp_path)
    more = run_sweep(example_trial, {"n": [10]}, trials=4, out=tmp_path)
    assert more.rows == run_sweep(example_trial, {"n": [10]}, trials=4).rows
    with pytest.raises(KmemsimValueError, match="different sweep"):
        run_sweep(example_trial, {"n": [11]}, trials=2, out=tmp_path)
    with pytest.raises(KmemsimValueError, match="different sweep"):
        run_sweep(example_trial, {"n": [10]}, trials=2, seed=3, out=tmp_path)


def test_csv_and_sidecar(tmp_path):
    s = run_experiment("stale_stacks", quick=True, trials=1, stack=["on"], poison=[False, True],
                       out=tmp_path, command=["kmemsim", "sweep", "stale_stacks"])
    with open(tmp_path / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2
    assert list(table[0])[:4] == ["point", "trial", "stack", "poison"]
    assert table[1]["poison"] == "True"
    assert int(table[1]["leaks"]) == s.rows[1]["leaks"]
    meta = json.loads((tmp_path / "results.json").read_text())
    assert meta["experiment"] == "stale_stacks"
    assert meta["seed"] == 0
    assert meta["trials"] == 1
    assert meta["grid"]["poison"] == [False, True]
    assert meta["complete"] is True
    assert meta["command"] == "kmemsim sweep stale_stacks"
    assert set(meta["versions"]) == {"kmemsim", "numpy", "python"}
    assert meta["trial"] == "kmemsim.experiments.stale_stacks.stale_stacks_trial"


def test_bad_arguments_are_typed_errors():
    with pytest.raises(KmemsimTypeError, match="grid"):
        run_sweep(example_trial, [("n", [1])], trials=1)  # type: ignore[arg-type]
    with pytest.raises(KmemsimValueError, match=r"grid\['n'\] is empty"):
        run_sweep(example_trial, {"n": []})
    with pytest.raises(KmemsimValueError, match="trials"):
        run_sweep(example_trial, {"n": [1]}, trials=0)
    with pytest.raises(KmemsimTypeError, match="executor"):
        run_sweep(example_trial, {"n": [1]}, executor=object())  # type: ignore[arg-type]
    with pytest.raises(KmemsimValueError, match="no experiment named 'nope'"):
        run_experiment("nope")
    with pytest.raises(KmemsimValueError, match="has no parameter 'colour'"):
        run_experiment("detectors", quick=True, colour=["red"])


def bad_trial(params: dict[str, Any], seed: np.random.SeedSequence) -> dict[str, Any]:
    return {"value": np.float64(1.0)}


def nan_trial(params: dict[str, Any], seed: np.random.SeedSequence) -> dict[str, Any]:
    return {"value": math.nan}


def test_trial_results_must_be_plain():
    with pytest.raises(KmemsimTypeError, match="'value' must be a plain"):
        run_sweep(bad_trial, {"n": [1]}, trials=1)
    with pytest.raises(KmemsimValueError, match="return None instead"):
        run_sweep(nan_trial, {"n": [1]}, trials=1)


def test_wilson_interval_and_quick_mode(monkeypatch):
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi
    assert math.isclose(0.5 - lo, hi - 0.5)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    monkeypatch.setenv("KMEMSIM_QUICK", "1")
    assert quick_mode()
    monkeypatch.setenv("KMEMSIM_QUICK", "0")
    assert not quick_mode()


# ------------------------------------------------------------------ the CLI
def test_cli_sweep_runs_and_writes(tmp_path, capsys):
    rc = main(["sweep", "false_positives", "--quick", "--trials", "1", "--cause", "xor",
               "--fraction", "0,0.5", "--annotation=none", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "false_positives: 2 trials, 2 grid points" in out
    assert "fp_rate" in out
    meta = json.loads((tmp_path / "results.json").read_text())
    assert meta["grid"]["fraction"] == [0.0, 0.5]
    assert meta["command"].startswith("kmemsim sweep")


def test_cli_sweep_with_workers_matches_serial(tmp_path):
    args = ["sweep", "stale_stacks", "--quick", "--trials", "2", "--calls", "20",
            "--poison", "false"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "results.csv").read_text() == \
        (tmp_path / "b" / "results.csv").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["sweep", "nope"], "no experiment named 'nope'"),
    (["sweep", "detectors", "--colour", "red"], "has no parameter 'colour'"),
    (["sweep", "detectors", "--older"], "--older needs a value"),
    (["sweep", "detectors", "--older", "soon"], "takes float values"),
    (["sweep"], "name an experiment"),
])
def test_cli_sweep_usage_errors_exit_2(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_sweep_list(capsys):
    assert main(["sweep", "--list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in out
    assert "--min_unref_scans 1,2,3" in out


def test_other_commands_still_refuse_unknown_options():
    with pytest.raises(SystemExit) as e:
        main(["gallery", "--bogus"])
    assert e.value.code == 2


# ------------------------------------------------------------------ the experiments
def _quick(name: str, **overrides: Any) -> list[dict[str, Any]]:
    return run_experiment(name, quick=True, seed=1, **overrides).summary()


def test_every_experiment_has_a_consistent_definition():
    assert list(EXPERIMENTS) == ["false_positives", "false_negatives_density", "stale_stacks",
                                 "time_to_report", "detectors"]
    for exp in EXPERIMENTS.values():
        assert set(exp.grid(quick=True)) == set(exp.grid()), exp.name
        assert exp.default_trials(quick=True) <= exp.default_trials()
        assert exp.trial.__module__.startswith("kmemsim.experiments.")


def test_false_positives_quick():
    rows = _quick("false_positives")
    by = {(r["cause"], r["fraction"], r["annotation"]): r for r in rows}
    for r in rows:
        assert r["fp_rate_lo"] <= r["fp_rate"] <= r["fp_rate_hi"]
        if r["fraction"] == 0.0 or r["cause"] == "interior":
            assert r["fp"] == 0, r  # nothing hidden (or hidden but visible): no false positive
        assert r["recall"] == 1.0  # the real leaks are always found
    for cause in ("xor", "page_memory", "no_scan_holder"):
        assert by[(cause, 0.2, "none")]["fp_rate"] > 0.1
        assert by[(cause, 0.2, "not_leak")]["fp"] == 0  # not_leak buys everything back
    assert by[("page_memory", 0.2, "register_pages")]["fp"] == 0
    assert by[("no_scan_holder", 0.2, "scan_area")]["fp"] == 0
    assert by[("xor", 0.2, "register_pages")]["fp_rate"] > 0.1  # the wrong fix buys nothing
    # a hidden reference hides its whole subtree: more false positives than hidden references
    assert by[("xor", 0.2, "none")]["fp"] > by[("xor", 0.2, "none")]["fp_direct"]


def test_false_negatives_density_quick_and_boehm_table():
    rows = _quick("false_negatives_density")
    by = {(r["arch"], r["random_words"]): r for r in rows}
    assert by[("i386", 0)]["retained"] == 0
    assert by[("x86_64", 0)]["retained"] == 0
    assert by[("x86_64", 30_000)]["retained"] == 0  # 64-bit: random words hit nothing
    i386 = by[("i386", 30_000)]
    assert math.isclose(i386["model"], model_retained(100 * 1024, 32, 30_000))
    assert i386["retained_rate_lo"] <= i386["model"] <= i386["retained_rate_hi"]
    table = boehm_table()
    assert len(table) == len(BOEHM_TABLE1)
    for row, (_, lo, hi, _, _) in zip(table, BOEHM_TABLE1, strict=True):
        # the model, at the word count it needs, gives the paper's midpoint
        assert abs(row["model_pct"] - (lo + hi) / 2) < 0.05
        assert row["kmemleak_pct"] is None


def test_boehm_table_takes_measurements():
    fake = [{"arch": "i386", "lists": 200, "list_kb": 100, "random_words": 65960,
             "retained": 157, "lists_total": 200, "point": 0}]
    row = boehm_table(fake)[0]
    assert row["kmemleak_pct"] == 78.5
    assert row["kmemleak_pct_lo"] < 78.5 < row["kmemleak_pct_hi"]


def test_stale_stacks_quick():
    rows = _quick("stale_stacks")
    by = {(r["stack"], r["poison"]): r for r in rows}
    assert by[("on", False)]["fn_stack"] > 0
    assert by[("on", True)]["fn_stack"] > 0
    assert by[("off", False)]["fn_stack"] == 0
    assert by[("off", True)]["fn_stack"] == 0
    assert by[("on", True)]["fn_reused"] == 0
    assert by[("off", True)]["fn_reused"] == 0
    assert by[("off", True)]["fp"] > 0
    assert by[("on", False)]["fp"] == 0
    assert by[("off", True)]["fn_rate"] < by[("on", False)]["fn_rate"]


def test_time_to_report_quick():
    rows = _quick("time_to_report")
    by = {(r["period"], r["content"], r["min_unref_scans"], r["checksum_seed"]): r for r in rows}
    assert all(r["report_rate"] == 1.0 for r in rows)
    # 60 s apart: a data leak needs two scans, an all-zero one one scan, or two with ~0;
    # min_unref_scans=2 adds one.  (A leak born in the last 5 s before a scan needs one more.)
    def scans(*key: Any) -> float:
        return float(by[key]["mean_scans"])

    assert 2.0 <= scans(60.0, "data", 1, "0") < 2.5
    assert 1.0 <= scans(60.0, "zero", 1, "0") < 1.5
    assert 2.0 <= scans(60.0, "zero", 1, "~0") < 2.5
    assert 3.0 <= scans(60.0, "data", 2, "0") < 3.5
    # 2 s apart: the 5 s minimum age dominates
    assert by[(2.0, "data", 1, "0")]["mean_scans"] >= 3.0
    # transient reports of the re-linked chain: the current rules report them
    assert by[(60.0, "data", 1, "0")]["chain_fp_rate"] > 0


def test_report_rules_default_is_kmemleak_and_min_unref_scans_filters():
    k = Kernel(config={"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False})
    head = k.define_static("head", 8)
    ps = [k.kmalloc(64) for _ in range(3)]
    for p in ps:
        k.memory.write_word(p, 0x1234)
    k.store(head, ps[0])
    now, two = ReportRules(), ReportRules(min_unref_scans=2)
    seen_now, seen_two = [], []
    for step in range(6):
        if step == 3:
            k.memory.write_word(head, 0)  # ps[0] leaks late
        k.sleep(6)
        r = k.kmemleak.scan()
        assert now.observe(r) == [o.pointer for o in r.new_leaks]
        seen_now.append(sorted(now.reported))
        seen_two.append(sorted(two.observe(r)))
    assert seen_now[1] == sorted(ps[1:])  # the checksum pass spared them once
    assert seen_two[2] == sorted(ps[1:])
    assert seen_two[4] == []
    assert seen_two[5] == [ps[0]]
    with pytest.raises(KmemsimValueError):
        ReportRules(checksum_seed="1")


def test_detectors_quick():
    rows = _quick("detectors")
    by = {r["older"]: r for r in rows}
    for r in rows:
        for tool in ("kmemleak", "bcc", "lsan", "valgrind"):
            assert 0.0 <= r[f"{tool}_precision"] <= 1.0
            assert 0.0 <= r[f"{tool}_recall"] <= 1.0
        # long-lived cache objects are outstanding: the tracer's precision suffers
        assert r["bcc_precision"] < r["kmemleak_precision"]
        # interior (list_head) references: memcheck says "possibly lost"
        assert r["valgrind_precision"] < r["lsan_precision"]
    # the age threshold trades the tracer's recall away
    assert by[0.5]["bcc_recall"] > by[30.0]["bcc_recall"]


def test_out_dir_rows_are_json_lines(tmp_path):
    run_experiment("detectors", quick=True, trials=1, older=[5.0], out=tmp_path)
    rows = [json.loads(x) for x in Path(tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["older"] == 5.0
