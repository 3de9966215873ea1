"""Benchmark ``convert`` against the ceiling of reading the same headers with pydicom.

    python bench/convert.py [--dir /tmp/dicom-fhir-bench] [--instances 3000] [--repeat 3]

The corpus (CT 512x512, MR 256x256, US, CR, SR; several series per study) comes from the
synthetic generator in ``sidecar.samples`` and is written once under ``--dir``.
The ceiling is what any header-only converter must do at least: ``dcmread`` with
``stop_before_pixels`` and ``specific_tags`` (the ~38 tags the mapping reads), then decode
their values (sequence items included), spread over all cores in the same chunks.
``convert`` additionally reads every element's header to the end of the file (the
truncation check), validates, merges and builds + serialises the Bundle.
Prints instances/s for both and their ratio (goal >= 0.8), by wall clock and by CPU time
(parent + worker processes). Runs alternate ceiling/convert and the best of ``--repeat``
is kept, so that load from other processes on a shared machine hits both alike; the CPU
figure is the one to trust when the machine is busy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydicom  # noqa: E402

from sidecar.core.mapping.tags import MAPPING_TAGS  # noqa: E402
from sidecar.entry.cli.convert import convert_paths, iter_files  # noqa: E402


def ensure_corpus(directory: Path, instances: int) -> list[str]:
    """Generate the corpus unless a complete one is already there."""
    marker = directory / f".complete-{instances}"
    if not marker.exists():
        from sidecar.samples.generator import generate_corpus, write_files

        print(f"generating {instances} instances under {directory} ...", file=sys.stderr)
        for _, datasets in generate_corpus(target_instances=instances, seed=0):
            write_files(datasets, directory)
        marker.write_text("ok")
    return [os.fspath(p) for p in iter_files([directory]) if not p.name.startswith(".")]


def _touch(value: object) -> int:
    """Decode a value fully (sequence items recursively); returns a count to keep it live."""
    if isinstance(value, list | tuple) or type(value).__name__ in ("Sequence", "MultiValue"):
        return sum(_touch(v) for v in value)
    if hasattr(value, "keys") and hasattr(value, "get"):  # a Dataset (sequence item)
        return sum(_touch(value[t].value) for t in list(value.keys()))
    return len(str(value))


SPECIFIC_TAGS = list(MAPPING_TAGS)


def ceiling_chunk(paths: list[str]) -> int:
    """Read headers and decode the mapping's values; no mapping at all."""
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=SPECIFIC_TAGS)
            for tag in MAPPING_TAGS:
                element = ds.get(tag)
                if element is not None:
                    _touch(element.value)
            n += 1
    return n


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_ceiling(files: list[str], workers: int, chunk_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the ceiling over all files."""
    chunks = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    start, cpu = time.perf_counter(), _cpu()
    with ProcessPoolExecutor(max_workers=workers) as pool:  # joined: children's CPU counted
        total = sum(pool.map(ceiling_chunk, chunks))
    assert total == len(files)
    return time.perf_counter() - start, _cpu() - cpu


def run_convert(directory: Path, workers: int, chunk_size: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, instances mapped) of convert incl. JSON serialisation."""
    start, cpu = time.perf_counter(), _cpu()
    bundle, summary = convert_paths(
        [directory], timezone="Europe/Zurich", workers=workers, chunk_size=chunk_size
    )
    json.dumps(bundle, sort_keys=True, ensure_ascii=False)
    return time.perf_counter() - start, _cpu() - cpu, summary.instances


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/dicom-fhir-bench", type=Path)
    parser.add_argument("--instances", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args()
    files = ensure_corpus(args.dir, args.instances)
    workers = os.cpu_count() or 1
    print(f"{len(files)} files, {workers} cores, chunk {args.chunk_size}", file=sys.stderr)

    ceiling_runs, convert_runs = [], []
    for _ in range(args.repeat):
        ceiling_runs.append(run_ceiling(files, workers, args.chunk_size))
        convert_runs.append(run_convert(args.dir, workers, args.chunk_size))
    n = len(files)
    mapped = convert_runs[0][2]
    for label, index in (("wall clock", 0), ("CPU time", 1)):
        ceiling_rate = n / min(r[index] for r in ceiling_runs)
        convert_rate = n / min(r[index] for r in convert_runs)
        unit = "instances/s" if index == 0 else "instances/CPU-s"
        print(
            f"[{label}] ceiling (pydicom headers + value decode, {workers} procs): "
            f"{ceiling_rate:7.0f} {unit}"
        )
        print(
            f"[{label}] convert (headers -> Bundle JSON, {mapped} instances):   "
            f"{convert_rate:7.0f} {unit}"
        )
        print(f"[{label}] ratio convert/ceiling: {convert_rate / ceiling_rate:.2f} (goal >= 0.80)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
