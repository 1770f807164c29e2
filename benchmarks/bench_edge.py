"""Edge export: bundle size and the latency of ``sklambda_edge.py`` in a numpy-only virtual environment.

    .venv/bin/python benchmarks/bench_edge.py            # demo forest + two bring-your-own pipelines
    .venv/bin/python benchmarks/bench_edge.py --quick    # fewer repetitions; writes benchmarks/.work/RESULTS-quick.md

Publishes three models into moto's S3 (the benchmark demo: RandomForest, 100 trees, max_depth 12, 20,000 rows;
``shop``: ColumnTransformer(imputer + scaler, OneHotEncoder on string columns) + LogisticRegression; ``sensors``:
HistGradientBoosting, 100 iterations, on 20 numeric columns with missing values), exports each with
``sklambda.lifecycle.export.export_version``, and in a fresh venv holding numpy only (``uv venv`` + ``uv pip install
numpy``) measures, in one process per model: ``load_bundle`` (sha256 + parse), one row and 1,000 rows through
``EdgeModel.answer`` (validation, scoring, the API's answer shape; rows cycled, each call timed alone), and the
command line end to end (``python -I sklambda_edge.py predict one-row.json`` as a new process, against a floor process
that only imports numpy). The same rows through the served runtime (``serving.loader.load_version``: validator +
lean model) in this interpreter are the baseline. Writes the "edge" section of RESULTS.md.

Run with ``--worker`` inside the edge venv (``-I``: standard library and numpy only), this file is its own timer.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work" / "edge"


# ----------------------------------------------------------------------------- the timer (runs in the edge venv)
def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - started)
    return out


def worker(bundle: Path, rows_file: Path) -> None:
    """Load the bundle, then answer timing requests from stdin (one JSON line each) until it closes."""
    sys.path.insert(0, str(bundle))
    started = time.perf_counter()
    import sklambda_edge  # the bundle's module, from its directory

    imported = time.perf_counter() - started
    started = time.perf_counter()
    model = sklambda_edge.load_bundle(bundle)
    loaded = time.perf_counter() - started
    rows = json.loads(rows_file.read_text())
    calls = _calls(model.answer, rows)
    foreign = sorted({n.split(".")[0] for n in sys.modules} - set(sys.stdlib_module_names) - {"__main__"})
    print(json.dumps({"import": imported, "load": loaded, "batch_rows": len(rows[:1000]), "modules": foreign}))
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(calls[request["kind"]](request["n"])), flush=True)


def _calls(answer: Any, rows: list[Any]) -> dict[str, Any]:
    """Timed chunks of one-row and 1,000-row calls (rows cycled, each call timed alone), after a warm-up."""
    batch = rows[:1000]
    position = [0]
    for i in range(50):
        answer([rows[i % len(rows)]])
    answer(batch)

    def single(n: int) -> list[float]:
        out = _timed(lambda i: answer([rows[(position[0] + i) % len(rows)]]), n)
        position[0] += n
        return out

    return {"single": single, "batch": lambda n: _timed(lambda _i: answer(batch), n)}


# ----------------------------------------------------------------------------- models
def _shop(n: int, seed: int) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "basket (EUR)": rng.gamma(3.0, 18.0, n).round(2),
            "tenure/months": rng.integers(0, 72, n),
            "plan": rng.choice(["free", "basic", "pro", "team"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "region": rng.choice(["north", "south", "east", "west", None], n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "basket (EUR)"] = np.nan
    score = 0.02 * frame["basket (EUR)"].fillna(40) - 0.03 * frame["tenure/months"] + (frame["plan"] == "free") * 1.2
    y = (score + rng.normal(0, 0.8, n) > 0).astype(int).to_numpy()
    return frame, y


def _shop_pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                ["basket (EUR)", "tenure/months"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))])


def _sensors(n: int, seed: int) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=20, n_informative=12, random_state=seed)
    frame = pd.DataFrame(x, columns=[f"sensor_{i:02d}" for i in range(20)])
    rng = np.random.default_rng(seed)
    frame = frame.mask(rng.random(frame.shape) < 0.05)
    return frame, y


def _instances(frame: Any) -> list[dict[str, Any]]:
    import math

    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


# ----------------------------------------------------------------------------- measurements
def _edge_python(log: Any) -> Path:
    import numpy as np

    venv = WORK / "venv"
    python = venv / "bin" / "python"
    probe = (
        "import numpy, importlib.util as u; "
        "print(numpy.__version__, [m for m in ('sklearn', 'sklambda') if u.find_spec(m)])"
    )
    if python.exists():
        found = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == f"{np.__version__} []":
            return python
    log(f"creating a numpy-only venv in {venv}")
    uv = ROOT / ".venv" / "bin" / "uv"
    subprocess.run([str(uv), "venv", "--quiet", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--python", str(python), f"numpy=={np.__version__}"], check=True
    )
    return python


def _bundle_sizes(bundle: Path) -> dict[str, int]:
    sizes = {p.name: p.stat().st_size for p in sorted(bundle.iterdir())}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(bundle.iterdir()):
            tar.add(p, arcname=f"{bundle.name}/{p.name}")
    sizes["tar.gz"] = len(gzip.compress(buffer.getvalue(), compresslevel=9))
    return sizes


def _interleaved(python: Path, bundle: Path, rows_file: Path, served: Any, rounds: int, singles: int, batches: int):
    """The edge worker (numpy-only venv) and the served runtime (here) timed in alternating chunks, ABBA."""
    process = subprocess.Popen(
        [str(python), "-I", str(Path(__file__).resolve()), "--worker", str(bundle), str(rows_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    info = json.loads(process.stdout.readline())

    def edge(kind: str, n: int) -> list[float]:
        process.stdin.write(json.dumps({"kind": kind, "n": n}) + "\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]
        return json.loads(process.stdout.readline())  # type: ignore[union-attr]

    out: dict[str, dict[str, list[float]]] = {
        "edge": {"single": [], "batch": []},
        "served": {"single": [], "batch": []},
    }
    for r in range(rounds):
        for kind, n in (("single", singles), ("batch", batches)):
            order = ("edge", "served") if r % 2 == 0 else ("served", "edge")
            for who in order:
                out[who][kind] += edge(kind, n) if who == "edge" else served[kind](n)
    process.stdin.close()
    process.wait(timeout=60)
    return info, out


def _processes(python: Path, bundle: Path, one_row: Path, n: int) -> dict[str, list[float]]:
    """New processes, alternating: the CLI answering one row, and a floor that imports numpy and exits."""
    out: dict[str, list[float]] = {"cli": [], "floor": []}
    commands = {
        "cli": [str(python), "-I", "sklambda_edge.py", "predict", str(one_row)],
        "floor": [str(python), "-I", "-c", "import numpy"],
    }
    for _ in range(n):
        for key, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, cwd=bundle, check=True, capture_output=True, env={"PATH": "/usr/bin:/bin"})
            out[key].append(time.perf_counter() - started)
    return out


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.3f}" if ms < 1 else f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}"


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", nargs=2, metavar=("BUNDLE", "ROWS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]))
        return 0

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(BENCH))
    import logging

    import boto3
    import numpy as np
    from _support import (
        DEMO_PARAMS,
        DEMO_ROWS,
        isolate_from_real_aws,
        library_versions,
        machine,
        publish_demo,
        start_moto,
        write_section,
    )

    from sklambda.lifecycle import demo
    from sklambda.lifecycle.export import export_version
    from sklambda.lifecycle.user_model import publish_user_model
    from sklambda.registry.store import ModelRegistry
    from sklambda.serving.loader import load_version

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # per round, each side: `singles` one-row calls and `batches` 1,000-row calls; rounds alternate who goes first
    rounds, singles, batches, processes = (2, 150, 2, 3) if args.quick else (10, 200, 3, 15)
    import os

    load_before = os.getloadavg()
    isolate_from_real_aws()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per S3 call otherwise
    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    python = _edge_python(log)
    server, endpoint = start_moto()
    results = []
    try:
        log("training and publishing the demo forest")
        reg = publish_demo(endpoint, rows=DEMO_ROWS, log=log)
        registry = ModelRegistry(boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"), reg.bucket)
        columns, _ = demo.generate(2000, seed=7)
        models: list[tuple[str, str, Any, list[Any]]] = [
            (
                "demo",
                f"RandomForest, {DEMO_PARAMS['n_estimators']} trees, max_depth {DEMO_PARAMS['max_depth']}, "
                f"{DEMO_ROWS:,} rows, 12 features (4 one-hot categories)",
                registry.get_manifest("demo", reg.version),
                demo.to_instances(columns),
            )
        ]
        shop, shop_y = _shop(5000, 0)
        log("publishing shop (ColumnTransformer + OneHotEncoder on strings + LogisticRegression)")
        published = publish_user_model(registry, "shop", _shop_pipeline().fit(shop, shop_y), shop, shop_y)
        models.append(
            (
                "shop",
                "ColumnTransformer(median imputer + StandardScaler; OneHotEncoder on 2 string columns) + "
                "LogisticRegression, 5,000 rows",
                published.manifest,
                _instances(_shop(2000, 1)[0]),
            )
        )
        from sklearn.ensemble import HistGradientBoostingClassifier

        sensors, sensors_y = _sensors(5000, 0)
        log("publishing sensors (HistGradientBoosting with missing values)")
        hgb = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(sensors, sensors_y)
        published = publish_user_model(registry, "sensors", hgb, sensors, sensors_y)
        models.append(
            (
                "sensors",
                "HistGradientBoostingClassifier, 100 iterations, 20 numeric columns with 5 % missing, 5,000 rows",
                published.manifest,
                _instances(_sensors(2000, 1)[0]),
            )
        )
        for name, what, manifest, rows in models:
            assert manifest.lean is not None and manifest.lean.accepted, manifest.lean
            bundle = WORK / "bundles" / name
            log(f"exporting {name} v{manifest.version}")
            export_started = time.perf_counter()
            exported = export_version(registry, name, bundle, version=manifest.version, force=True)
            export_seconds = time.perf_counter() - export_started
            rows_file = WORK / f"{name}-rows.json"
            rows_file.write_text(json.dumps(rows))
            one_row = WORK / f"{name}-one-row.json"
            one_row.write_text(json.dumps(rows[:1]))
            log(f"{name}: edge runtime (numpy-only venv) and served runtime (here), interleaved")
            loaded = load_version(registry, manifest)
            served = _calls(lambda batch, m=loaded: m.predict(m.validator.to_matrix(batch)), rows)
            info, timings = _interleaved(python, bundle, rows_file, served, rounds, singles, batches)
            check_started = time.perf_counter()
            checked = subprocess.run(
                [str(python), "-I", "sklambda_edge.py", "check"], cwd=bundle, capture_output=True, text=True
            )
            check_seconds = time.perf_counter() - check_started
            if checked.returncode != 0:
                raise SystemExit(f"{name}: the bundle's check failed on this machine:\n{checked.stderr}")
            log(f"{name}: new processes")
            spawned = _processes(python, bundle, one_row, processes)
            results.append(
                {
                    "name": name,
                    "what": what,
                    "version": manifest.version,
                    "sizes": _bundle_sizes(bundle),
                    "golden": exported.certificate["golden"]["counts"],
                    "export_seconds": export_seconds,
                    "check_seconds": check_seconds,
                    "edge": {**info, **timings["edge"]},
                    "served": timings["served"],
                    "spawned": spawned,
                }
            )
    finally:
        server.stop()
    facts = {**machine(), "load": (load_before[0], os.getloadavg()[0])}
    text = report(results, facts, library_versions(), np.__version__, args, time.perf_counter() - started)
    print(text)
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
    if args.quick:
        (BENCH / ".work" / "RESULTS-quick.md").write_text(text)
    else:
        write_section("edge", text)
    return 0


def report(results: list[dict[str, Any]], facts: dict[str, Any], libs: dict[str, str], numpy: str, args: Any,
           seconds: float) -> str:  # fmt: skip
    med = statistics.median
    lines = [
        "## Edge export: bundle size and the edge runtime's latency (`benchmarks/bench_edge.py`)",
        "",
        f"- **Date:** {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"(benchmark wall time {seconds / 60:.1f} min)",
        f"- **Machine:** {facts.get('cpu')}, {facts.get('cores')} cores ({facts.get('usable_cores')} usable), "
        f"{facts.get('ram_gib') or 0:.1f} GiB RAM, {facts.get('os')}; shared and noisy (1-minute load average "
        f"{facts['load'][0]:.1f} at the start, {facts['load'][1]:.1f} at the end)",
        f"- **Edge venv:** {facts.get('python')} with numpy {numpy} only (`uv venv` + `uv pip install numpy`), "
        "processes started with `-I`; the edge process imports numpy and `sklambda_edge` and nothing else "
        "(checked in every run)",
        f"- **Baseline:** the served runtime (`load_version`: request validator + lean model, scikit-learn "
        f"{libs.get('scikit-learn')} installed but not imported) in the benchmark's own interpreter, same rows",
        "- **Timed:** `EdgeModel.answer(rows)` = validation against the schema, scoring, the API's answer shape "
        "(no JSON encoding), and the served `LoadedModel.predict(validator.to_matrix(rows))`; every call timed "
        "alone, rows cycled, edge and served in alternating chunks (ABBA) so the machine's noise hits both; medians."
        " *CLI* = a new process "
        "`python -I sklambda_edge.py predict one-row.json` (interpreter, numpy import, sha256 of the artifact and "
        "schema, load, one answer, JSON out) against a *floor* process that only imports numpy, alternated",
        f"- **Reproduce:** `.venv/bin/python benchmarks/bench_edge.py{' --quick' if args.quick else ''}`",
        "",
        "| model | bundle: artifact / runtime / certificate / schema, KiB | bundle .tar.gz | golden rows | "
        "load_bundle | 1 row: edge | served | 1,000 rows: edge | served | per row (batch) | CLI, 1 row | floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s, e, v, sp = r["sizes"], r["edge"], r["served"], r["spawned"]
        if e["modules"] != ["numpy", "sklambda_edge"]:
            raise SystemExit(f"{r['name']}: the edge process imported {e['modules']}")
        lines.append(
            f"| `{r['name']}` v{r['version']} | {_kib(s['model.lean.npz'])} / {_kib(s['sklambda_edge.py'])} / "
            f"{_kib(s['certificate.json'])} / {_kib(s['features.json'])} | {_kib(s['tar.gz'])} KiB | "
            f"{r['golden']['cases']:,} | {_ms(e['load'])} ms | {_ms(med(e['single']))} ms | "
            f"{_ms(med(v['single']))} ms | {_ms(med(e['batch']))} ms | {_ms(med(v['batch']))} ms | "
            f"{_ms(med(e['batch']) / e['batch_rows'])} ms | {_ms(med(sp['cli']))} ms | {_ms(med(sp['floor']))} ms |"
        )
    lines += ["", "Models:", ""]
    for r in results:
        e = r["edge"]
        lines.append(
            f"- `{r['name']}`: {r['what']}. Export {r['export_seconds']:.1f} s; `check` on this machine "
            f"{r['check_seconds']:.2f} s (every golden row in one batch, as lists and one by one); edge/served ratio "
            f"1 row {statistics.median(e['single']) / statistics.median(r['served']['single']):.2f}×, 1,000 rows "
            f"{statistics.median(e['batch']) / statistics.median(r['served']['batch']):.2f}× "
            f"({len(e['single']):,} single calls, {len(e['batch'])} batches each)"
        )
    lines += [
        "",
        "The edge runtime is the served runtime's code (generated from `serving/lean/` and `serving/validation.py`), "
        "so the edge/served ratios near 1 are the expectation, not a result; what the edge adds is the process: "
        "the CLI's cost over the numpy floor is reading and hashing the bundle and loading the artifact.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
