"""Mutation testing with mutmut 3 over nm_tvm/pwl.py, target/codegen/ and passes/ (`make mutation`).

    python benchmarks/mutation.py                          # every group below
    python benchmarks/mutation.py --mutate nm_tvm/pwl.py   # one module (or a folder)
    python benchmarks/mutation.py --mutate passes/ --resume  # only mutants without a result yet
    python benchmarks/mutation.py --mutate nm_tvm/pwl.py --sample 300 --seed 1
    python benchmarks/mutation.py --mutate nm_tvm/pwl.py --rerun-survivors

``--sample N --seed S`` checks a uniform random sample (without replacement) of N of the
selected modules' mutants and reports the score with a 95% Wilson interval; it is recorded
apart from the full runs (``sampled`` in the JSON, its own table in the markdown), never as a
module's score. ``--rerun-survivors`` re-checks only the mutants that survived (or had no
tests) in the last run in the staging folder, plus every mutant of a function edited since, and
merges them into that run's results: valid while tests were only added or tightened (a kill
stays a kill);
mutmut resets every result when the pool of test files changes, which is refused. With
``--sample N --seed S`` too it re-checks only the survivors of that sample (the same mutants:
same N, seed and mutant population), so a sampled score can be updated after new tests.

Results merge into benchmarks/results/mutation.json (per module killed / survived / timeout /
no tests / not mutated, and every survivor as file:line plus the mutation's diff);
benchmarks/results/mutation.md is regenerated from the JSON.

The layout problem. pyproject maps passes/ -> nm_tvm.passes, target/ -> nm_tvm.target,
models/ -> nm_tvm.models through scikit-build-core; the editable install puts a finder at the
front of sys.meta_path that resolves every nm_tvm.* module to the checkout. mutmut copies the
sources into mutants/ and prepends mutants/ to sys.path, which that finder beats, and mutmut
names a mutant after the file's path (passes/x.py -> ``passes.x``), which would not match the
module's ``__name__`` (``nm_tvm.passes.x``) that its trampolines compare with. So each group runs
in a staging folder, build/mutation/<group>/, holding a plain (non-editable) package layout:
nm_tvm/ with passes/, target/ (plus the built libnm_accel.so) and models/ placed inside it as
the wheel has them, and copies of tests/ and benchmarks/. There mutmut runs with
PYTHONPATH=_site:mutants, where _site/sitecustomize.py drops the editable finder (sitecustomize
runs after the .pth files), so the process and the tests' subprocesses (CLI tests) import the
mutated copy. Checked twice each run: the staged modules must import from mutants/, and
mutmut's own forced-fail run (every trampoline raises) must make the tests fail.

Decorated functions (other than staticmethod / classmethod) are skipped by mutmut 3 itself;
they are listed per module as "not mutated" (never counted as killed), as are lines under
``# pragma: no mutate``. Top-level classes and functions whose decorators are all in
POST_DECORATE (TVM's module_pass / mutator wrappers, accelerator_op, register_error) are staged
as ``X = deco(X)`` after the definition instead, so that mutmut mutates them: mutmut cannot
trampoline the methods of a class its decorator replaces by a wrapper.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import filecmp
import fnmatch
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
RESULTS = ROOT / "benchmarks" / "results"

# Each group: the repository files it mutates, and the fast tests mutmut may run for them
# (mutmut's stats run maps every function to the tests of this pool that call it; a mutant
# runs only those, most expensive last, stopping at the first failure).
GROUPS = {
    "pwl": {
        "mutate": ["nm_tvm/pwl.py"],
        "tests": ["tests/test_pwl*.py", "tests/test_linearize.py", "tests/test_simulator.py",
                  "tests/test_timing.py", "tests/test_ops.py"],
    },
    "codegen": {
        "mutate": ["target/codegen/*.py", "target/backend/*.py"],
        "tests": ["tests/test_ops.py", "tests/test_simulator.py", "tests/test_timing.py",
                  "tests/test_bad_inputs.py", "tests/test_layer_names.py",
                  "tests/test_differential.py", "tests/test_conformance.py",
                  "tests/test_codegen_mutants.py"],
    },
    "passes": {
        "mutate": ["passes/*.py"],
        "tests": ["tests/test_linearize.py", "tests/test_ops.py", "tests/test_bad_inputs.py",
                  "tests/test_differential.py", "tests/test_conformance.py",
                  "tests/test_layer_names.py", "tests/test_end_to_end.py",
                  "tests/test_passes_mutants.py"],
    },
}
PYTEST_ARGS = ["-p", "no:cacheprovider", "-m", "not slow"]
# Per-mutant CPU-time limit: 2 * multiplier * (the clean run time of its tests + constant);
# mutmut also stops a mutant after multiplier * (that time + constant) of wall time. Each mutant
# re-collects its test files in a fresh pytest: the codegen / passes pools (conformance,
# differential, end-to-end) take 10-20 s to collect, more on a shared machine, which a constant
# of 5 s turned into false timeouts (counted as kills); those groups get a larger constant.
TIMEOUT_MULTIPLIER = 3.0
TIMEOUT_CONSTANT = 5.0
TIMEOUT_CONSTANT_BY_GROUP = {"codegen": 60.0, "passes": 60.0}
SITECUSTOMIZE = '''\
# Written by benchmarks/mutation.py: drop the editable install's finder so that nm_tvm.* is
# imported from mutmut's mutants/ copy (on PYTHONPATH), not from the checkout.
import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if type(f).__name__ not in ("ScikitBuildRedirectingFinder",
                                                "ScikitBuildInplaceFinder")]
'''


def package_map() -> dict[str, str]:
    """Package folder in the wheel -> folder in the checkout (pyproject's wheel.packages)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["tool"]["scikit-build"]["wheel"]["packages"]


def to_package_path(repo_path: str) -> str:
    pmap = package_map()
    best = max((src for src in pmap.values() if repo_path.startswith(src.rstrip("/") + "/")),
               key=len)
    pkg = next(k for k, v in pmap.items() if v == best)
    return pkg + repo_path[len(best):]


def to_repo_path(package_path: str) -> str:
    pmap = package_map()
    best = max((pkg for pkg in pmap if package_path.startswith(pkg + "/")), key=len)
    return pmap[best] + package_path[len(best):]


def group_files(group: str) -> list[str]:
    out = []
    for pattern in GROUPS[group]["mutate"]:
        out += sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern)
                      if p.name != "__init__.py" or p.stat().st_size > 200)
    return out


def select(mutate: list[str]) -> dict[str, list[str]]:
    """--mutate entries (files or folders, repository paths) -> {group: [repo files]}."""
    chosen: dict[str, list[str]] = {}
    for group in GROUPS:
        files = group_files(group)
        if mutate:
            files = [f for f in files
                     if any(f == m.rstrip("/") or f.startswith(m.rstrip("/") + "/")
                            or fnmatch.fnmatch(f, m) for m in mutate)]
        if files:
            chosen[group] = files
    if mutate and not chosen:
        sys.exit(f"mutation: nothing to mutate in {mutate} (groups: "
                 f"{', '.join(p for g in GROUPS.values() for p in g['mutate'])})")
    return chosen


# Decorators that replace a class by a wrapper (TVM's pass / mutator wrappers) or register a
# function: mutmut 3 cannot trampoline the methods of such a class (it reads them back from the
# name after the class statement, which is then the wrapper), and skips decorated functions. The
# staged copy applies them after the definition instead (``X = deco(X)``, the same object the
# decorator syntax binds), so their bodies are mutated too. Caching decorators (lru_cache) stay:
# a cache filled before mutmut forks would hide a mutant.
POST_DECORATE = {"tvm.transform.module_pass", "relax.expr_functor.mutator",
                 "tvm_ffi.register_error", "accelerator_op"}


def _decorator_name(node: ast.expr) -> str:
    return ast.unparse(node.func if isinstance(node, ast.Call) else node)


def post_decorated(source: str) -> str:
    """``source`` with each top-level POST_DECORATE decorator moved after its definition; the
    decorator lines become comments and one line per definition follows it, so line numbers
    inside the definitions shift by at most the number of definitions before them."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    inserts = []  # (after line, text)
    for node in tree.body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)) or not node.decorator_list:
            continue
        if not all(_decorator_name(d) in POST_DECORATE for d in node.decorator_list):
            continue
        expr = node.name
        for d in reversed(node.decorator_list):
            expr = f"({ast.get_source_segment(source, d)})({expr})"
            for i in range(d.lineno - 1, d.end_lineno):
                lines[i] = "# (decorator applied after the definition: benchmarks/mutation.py)\n"
        inserts.append((node.end_lineno, f"{node.name} = {expr}\n"))
    for after, text in sorted(inserts, reverse=True):
        lines.insert(after, text)
    return "".join(lines)


def sync(src: Path, dst: Path, skip=("__pycache__", "csrc", "results"),
         transform=None) -> None:
    """Mirror src into dst, copying only changed files (keeps mtimes, so mutmut regenerates
    mutants only for sources that changed); ``transform``: applied to the text of .py files."""
    dst.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in src.iterdir() if p.name not in skip}
    for p in dst.iterdir():
        if p.name not in names and p.name not in skip and not (dst / p.name).is_dir():
            p.unlink()
    for name in sorted(names):
        s, d = src / name, dst / name
        if s.is_dir():
            sync(s, d, skip, transform)
        elif transform is not None and s.suffix == ".py":
            text = transform(s.read_text())
            if not d.exists() or d.read_text() != text:
                d.write_text(text)  # now: newer than any mutants mutmut made from it
        elif not d.exists() or not filecmp.cmp(s, d, shallow=False):
            shutil.copy2(s, d)


def pool_of(group: str) -> list[str]:
    """The group's test files that exist (entries may be globs)."""
    return sorted({str(p.relative_to(ROOT)) for t in GROUPS[group]["tests"] for p in ROOT.glob(t)})


def simulator_library() -> Path:
    out = subprocess.run([sys.executable, "-c",
                          "from nm_tvm.target.simulator import _library_path; "
                          "print(_library_path())"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return Path(out.stdout.strip().splitlines()[-1])


def stage(group: str, files: list[str], max_children: int) -> Path:
    wd = WORK / group
    pmap = package_map()
    for pkg, src in sorted(pmap.items(), key=lambda kv: kv[0].count("/")):
        sync(ROOT / src, wd / pkg, skip=("__pycache__", "csrc") + tuple(
            Path(p).name for p in pmap if p != pkg and p.startswith(pkg + "/")),
            transform=post_decorated)
    lib = simulator_library()
    shutil.copy2(lib, wd / "nm_tvm" / "target" / lib.name)
    sync(ROOT / "tests", wd / "tests")
    sync(ROOT / "benchmarks", wd / "benchmarks")
    (wd / "_site").mkdir(exist_ok=True)
    # mutants/ must exist before Python starts: a PYTHONPATH entry that is missing then is
    # cached as "no finder" for the whole process, and nm_tvm would come from the checkout.
    (wd / "mutants").mkdir(exist_ok=True)
    (wd / "_site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    pool = pool_of(group)
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["markers"]
    only = [to_package_path(f) for f in group_files(group)]
    q = json.dumps
    (wd / "pyproject.toml").write_text("\n".join([
        "# Written by benchmarks/mutation.py for one mutation group; not the project's file.",
        "[tool.pytest.ini_options]",
        f"markers = {q(markers)}",
        "",
        "[tool.mutmut]",
        'source_paths = ["nm_tvm"]',
        f"only_mutate = {q(only)}",
        'also_copy = ["benchmarks"]',
        f"pytest_add_cli_args_test_selection = {q(pool)}",
        f"pytest_add_cli_args = {q(PYTEST_ARGS)}",
        f"timeout_multiplier = {TIMEOUT_MULTIPLIER}",
        f"timeout_constant = {TIMEOUT_CONSTANT_BY_GROUP.get(group, TIMEOUT_CONSTANT)}",
        "use_git_change_detection = false",
        "use_setproctitle = false",
        "",
    ]))
    # Tests changed (e.g. new ones pulled): recollect which tests cover which function.
    digest = hashlib.sha256()
    for p in sorted((ROOT / "tests").rglob("*.py")):
        digest.update(p.read_bytes())
    stamp = wd / "tests.sha256"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        (wd / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest())
    return wd


def env_for(wd: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(wd / "_site"), str(wd / "mutants")])
    env.setdefault("TVM_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def check_layout(wd: Path, files: list[str]) -> None:
    """The staged modules must import from mutants/ with the editable finder out of the way."""
    mods = [to_package_path(f)[:-3].replace("/", ".") for f in files]
    code = ("import importlib, sys; "
            f"print('\\n'.join(importlib.import_module(m).__file__ for m in {mods!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=wd / "mutants", env=env_for(wd),
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"mutation: staged import failed:\n{out.stderr}")
    bad = [p for p in out.stdout.split() if not p.startswith(str(wd / "mutants") + "/")]
    if bad:
        sys.exit(f"mutation: modules imported from outside mutants/: {bad}")


def meta_of(wd: Path, package_path: str) -> dict:
    p = wd / "mutants" / (package_path + ".meta")
    return json.loads(p.read_text()) if p.exists() else {}


def all_mutants(wd: Path, files: list[str], hashes: dict | None = None) -> list[str]:
    """Every mutant name of the staged files, as mutmut generates them (same function, no
    coverage filter), without running anything; ``hashes`` gets each file's function hashes."""
    sys.path.insert(0, str(wd))
    cwd = os.getcwd()
    os.chdir(wd)
    try:
        from mutmut.mutation.file_mutation import mutate_file_contents  # noqa: E402
        from mutmut.utils.format_utils import get_mutant_name  # noqa: E402
        names = []
        for f in files:
            ppath = to_package_path(f)
            mutated = mutate_file_contents(ppath, (wd / ppath).read_text())
            names += [get_mutant_name(Path(ppath), n) for n in mutated.mutant_names]
            if hashes is not None:
                hashes[ppath] = dict(mutated.hash_by_function_name)
    finally:
        os.chdir(cwd)
        sys.path.remove(str(wd))
    return sorted(names, key=_natural)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_group(group: str, files: list[str], max_children: int, resume: bool,
              sample: int | None = None, seed: int = 0, rerun_survivors: bool = False) -> dict:
    wd = stage(group, files, max_children)
    # Generate mutants first (names are needed to pick this module's ones), then run.
    env = env_for(wd)
    mutmut = [sys.executable, "-m", "mutmut"]
    patterns = []
    for f in files:
        mod = to_package_path(f)[:-3].replace("/", ".")
        patterns.append(mod + ".*")
    names = patterns
    chosen = None
    if sample is not None:
        population = all_mutants(wd, files)
        chosen = sorted(random.Random(seed).sample(population, min(sample, len(population))),
                        key=_natural)
        names = chosen
        print(f"[{group}] sampled {len(chosen)} of {len(population)} mutants (seed {seed})",
              flush=True)
    if rerun_survivors:
        hashes: dict = {}
        current = all_mutants(wd, files, hashes)
        if chosen is not None:  # a sampled run again: only its mutants are looked at
            current = [k for k in current if k in set(chosen)]
        names = []
        for f in files:
            ppath = to_package_path(f)
            meta = meta_of(wd, ppath)
            codes = meta.get("exit_code_by_key", {})
            prefix = ppath[:-3].replace("/", ".") + "."
            if not any(k.startswith(prefix) for k in current):
                continue  # no mutant of this file (in the sample)
            if not codes:
                sys.exit(f"mutation: no previous run of {f} in {wd.relative_to(ROOT)}; "
                         "run it in full first")
            # functions edited since: mutmut resets their mutants, so they are checked anew
            old = meta.get("hash_by_function_name", {})
            changed = {fn for fn, h in hashes[ppath].items() if old.get(fn) != h}
            prefix = ppath[:-3].replace("/", ".") + "."
            for k in current:
                if not k.startswith(prefix):
                    continue
                fn = k[len(prefix):].partition("__mutmut_")[0]
                if (fn in changed or k not in codes or STATUS.get(codes[k], "suspicious") in (
                        "survived", "no_tests", "suspicious", "not_checked")):
                    names.append(k)
        print(f"[{group}] re-checking {len(names)} mutants{' of the sample' if chosen else ''}: "
              "previous survivors, unchecked ones and those of functions edited since", flush=True)
    if resume:
        names = []
        for f in files:
            names += [k for k, v in meta_of(wd, to_package_path(f)).get(
                "exit_code_by_key", {}).items() if v is None] or ([] if meta_of(
                    wd, to_package_path(f)) else [to_package_path(f)[:-3].replace("/", ".") + ".*"])
    t0 = time.time()
    log = wd / "mutmut.log"
    if names:
        print(f"[{group}] mutmut run over {', '.join(files)} (log: {log.relative_to(ROOT)})",
              flush=True)
        with open(log, "w") as fh:
            proc = subprocess.run(mutmut + ["run", "--max-children", str(max_children)] + names,
                                  cwd=wd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        tail = log.read_text(errors="replace")[-3000:]
        if proc.returncode:
            sys.exit(f"mutation: mutmut failed ({proc.returncode}):\n{tail}")
    check_layout(wd, files)
    wall = time.time() - t0
    result = collect(group, wd, files, wall, env, only=chosen)
    if chosen is not None:
        result["sampled"] = {"n": len(chosen), "seed": seed, "population": len(population)}
    if rerun_survivors:
        result["rerun_survivors"] = len(names)
        stale = {f: m["not_checked"] for f, m in result["modules"].items() if m["not_checked"]}
        if stale:  # mutmut reset results (pool of tests or config changed): no full picture
            # (a sampled re-check: the same seed's sample without RERUN checks it afresh)
            sys.exit(f"mutation: after re-checking survivors some mutants have no result "
                     f"({stale}); mutmut reset them (test pool changed?) -- run in full")
    return result


STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          -11: "segfault", -9: "segfault", 37: "killed", None: "not_checked"}


def function_lines(source: str) -> dict[tuple[str | None, str], int]:
    """(class, function) -> line of its ``def`` (top-level functions and methods)."""
    out = {}
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[(None, node.name)] = node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[(node.name, sub.name)] = sub
    return out


def not_mutated(source: str) -> list[dict]:
    """Functions mutmut 3 leaves alone: decorated by anything but staticmethod/classmethod."""
    rows = []
    top = {n.name for n in ast.parse(source).body
           if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.decorator_list
           and all(_decorator_name(d) in POST_DECORATE for d in n.decorator_list)}
    for (cls, name), node in function_lines(source).items():
        decos = [ast.unparse(d) for d in node.decorator_list]
        if cls is None and name in top:
            continue  # staged as ``name = deco(name)``: mutated
        if decos and not (len(decos) == 1 and decos[0] in ("staticmethod", "classmethod")):
            rows.append({"function": f"{cls + '.' if cls else ''}{name}", "line": node.lineno,
                         "lines": node.end_lineno - node.lineno + 1,
                         "why": "decorated (" + ", ".join("@" + d for d in decos) + ")"})
    for i, line in enumerate(source.splitlines(), 1):
        if re.search(r"#\s*pragma:\s*no mutate", line):
            rows.append({"function": None, "line": i, "lines": 1, "why": "# pragma: no mutate"})
    return rows


def collect(group, wd, files, wall, env, only=None) -> dict:
    """Per-module counts and survivors from mutmut's meta files; ``only``: just these
    mutants (a sampled run)."""
    sys.path.insert(0, str(wd))
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # noqa: E402
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key  # noqa: E402
    modules = {}
    cwd = os.getcwd()
    os.chdir(wd)
    try:
        for f in files:
            ppath = to_package_path(f)
            meta = meta_of(wd, ppath)
            codes = meta.get("exit_code_by_key", {})
            durations = meta.get("durations_by_key", {})
            source = (ROOT / f).read_text()
            defs = function_lines(source)
            counts = {"killed": 0, "survived": 0, "timeout": 0, "no_tests": 0, "segfault": 0,
                      "not_checked": 0, "suspicious": 0}
            survivors = []
            if only is not None:
                prefix = ppath[:-3].replace("/", ".") + "."
                picked = {k for k in only if k.startswith(prefix)}
                missing = picked - set(codes)
                if missing:
                    sys.exit(f"mutation: sampled mutants unknown to mutmut: {sorted(missing)[:5]}")
                codes = {k: v for k, v in codes.items() if k in picked}
                durations = {k: v for k, v in durations.items() if k in picked}
            for key, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
                status = STATUS.get(code, "suspicious")
                counts[status] += 1
                if status not in ("survived", "no_tests", "suspicious", "not_checked"):
                    continue
                diff = get_diff_for_mutant(key, path=ppath)
                func, cls = orig_function_and_class_names_from_key(key)
                node = defs.get((cls, func))
                line = (node.lineno + _first_changed(diff)) if node else None
                survivors.append({"mutant": key, "status": status,
                                  "where": f"{f}:{line}" if line else f,
                                  "diff": _short_diff(diff, f)})
            total = sum(counts.values())
            done = counts["killed"] + counts["timeout"] + counts["segfault"]
            checked = total - counts["not_checked"]
            modules[f] = {
                **counts, "total": total,
                "score": round(done / checked, 4) if checked else None,
                # a full run is a census (no interval); a sample estimates the full score
                **({"interval95": [round(b, 4) for b in wilson(done, checked)]}
                   if only is not None else {}),
                "not_mutated": not_mutated(source),
                "survivors": survivors,
                "mutant_seconds": round(sum(v for v in durations.values() if v), 1),
            }
    finally:
        os.chdir(cwd)
        sys.path.remove(str(wd))
    return {"group": group, "wall_s": round(wall, 1), "modules": modules,
            "tests": pool_of(group)}


def _natural(key: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _first_changed(diff: str) -> int:
    """Offset (0-based, from the def line) of the first original line a function diff changes."""
    old = 0
    started = False
    for line in diff.splitlines():
        if line.startswith("@@"):
            old = int(re.match(r"@@ -(\d+)", line).group(1)) - 1
            started = True
            continue
        if not started:
            continue
        if line.startswith(("-", "+")):
            return old
        old += 1
    return 0


def _short_diff(diff: str, path: str) -> str:
    lines = [ln for ln in diff.splitlines()[2:] if ln.startswith(("-", "+"))]
    return "\n".join(lines)


def merge(results: list[dict], json_path: Path, md_path: Path, started: float) -> dict:
    data = json.loads(json_path.read_text()) if json_path.exists() else {}
    data.setdefault("modules", {})
    data.setdefault("runs", [])
    import mutmut
    for r in results:
        sampled = r.get("sampled")
        for f, m in r["modules"].items():
            m["group"] = r["group"]
            m["tests_pool"] = r["tests"]
            m["measured"] = time.strftime("%Y-%m-%d %H:%M")
            if sampled:  # an estimate: kept apart, never a module's (full-run) score
                if not m["total"]:
                    continue  # no mutant of this module in the sample
                m["sampled"] = sampled
                data.setdefault("sampled", {})[f] = m
            else:
                data["modules"][f] = m
        n = sum(m["total"] - m["not_checked"] for m in r["modules"].values())
        if r.get("rerun_survivors") is not None:
            n = r["rerun_survivors"]
        run = {"group": r["group"], "modules": sorted(r["modules"]),
               "kind": ("sampled-rerun" if r.get("rerun_survivors") is not None else "sampled")
               if sampled else
               "rerun-survivors" if r.get("rerun_survivors") is not None else "full",
               "mutants_run": n, "wall_s": r["wall_s"],
               "mutants_per_minute": round(60 * n / r["wall_s"], 1) if r["wall_s"] else None,
               "at": time.strftime("%Y-%m-%d %H:%M")}
        if sampled:
            run.update(sampled)
            run["scores"] = {f: {"score": m["score"], "interval95": m["interval95"]}
                             for f, m in r["modules"].items()}
        data["runs"].append(run)
    data["runs"] = data["runs"][-30:]
    data["tool"] = f"mutmut {mutmut.__version__}"
    data["settings"] = {"pytest_args": PYTEST_ARGS, "timeout_multiplier": TIMEOUT_MULTIPLIER,
                        "timeout_constant": TIMEOUT_CONSTANT,
                        "timeout_constant_by_group": TIMEOUT_CONSTANT_BY_GROUP,
                        "groups": {g: v["mutate"] for g, v in GROUPS.items()}}
    tot = {k: sum(m[k] for m in data["modules"].values())
           for k in ("killed", "survived", "timeout", "no_tests", "segfault", "not_checked",
                     "suspicious", "total")}
    checked = tot["total"] - tot["not_checked"]
    tot["score"] = round((tot["killed"] + tot["timeout"] + tot["segfault"]) / checked, 4) \
        if checked else None
    data["total"] = tot
    data["modules"] = dict(sorted(data["modules"].items()))
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    md_path.write_text(render_md(data))
    return data


def render_md(data: dict) -> str:
    out = ["# Mutation testing (`make mutation`)", "",
           f"Tool: {data['tool']}, run by `benchmarks/mutation.py` (see its docstring for the "
           "staging layout). Score = (killed + timeout) / mutants checked. Raw data, with the "
           "diff of every survivor: `mutation.json`.", "",
           "| module | killed | survived | timeout | no tests | total | score | not mutated |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for f, m in data["modules"].items():
        nm = ", ".join(f"{r['function'] or 'line'} (l.{r['line']})" for r in m["not_mutated"])
        score = f"{100 * m['score']:.1f}%" if m["score"] is not None else "-"
        out.append(f"| {f} | {m['killed']} | {m['survived']} | {m['timeout']} | "
                   f"{m['no_tests']} | {m['total']} | {score} | {nm or '-'} |")
    t = data["total"]
    score = f"{100 * t['score']:.1f}%" if t["score"] is not None else "-"
    out.append(f"| **all** | {t['killed']} | {t['survived']} | {t['timeout']} | "
               f"{t['no_tests']} | {t['total']} | {score} | |")
    if data.get("sampled"):
        out += ["", "Sampled runs (`--sample N --seed S`: a uniform random sample of the module's "
                "mutants, an estimate of the full score with its 95% Wilson interval; not the "
                "full-run score above):", "",
                "| module | sampled | seed | of | killed | survived | timeout | no tests | "
                "score | 95% interval | measured |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for f, m in sorted(data["sampled"].items()):
            sm = m["sampled"]
            lo, hi = m["interval95"]
            score = f"{100 * m['score']:.1f}%" if m["score"] is not None else "-"
            out.append(f"| {f} | {sm['n']} | {sm['seed']} | {sm['population']} | {m['killed']} | "
                       f"{m['survived']} | {m['timeout']} | {m['no_tests']} | {score} | "
                       f"{100 * lo:.1f}-{100 * hi:.1f}% | {m['measured']} |")
        groups: dict = {}
        for m in data["sampled"].values():
            g = groups.setdefault(m["group"], [0, 0, m["sampled"]])
            g[0] += m["killed"] + m["timeout"] + m["segfault"]
            g[1] += m["total"] - m["not_checked"]
        out += [""]
        for name, (done, checked, sm) in sorted(groups.items()):
            lo, hi = wilson(done, checked)
            out.append(f"- group {name}, SAMPLED estimate ({sm['n']} of {sm['population']} "
                       f"mutants, seed {sm['seed']}): {done} / {checked} killed = "
                       f"{100 * done / checked:.1f}%, 95% Wilson interval "
                       f"{100 * lo:.1f}-{100 * hi:.1f}%")
    out += ["", "Runs (latest last):", ""]
    for r in data["runs"][-8:]:
        kind = r.get("kind", "full")
        what = {"full": "", "rerun-survivors": " (re-check of the previous survivors)",
                "sampled-rerun": f" (re-check of the survivors of the SAMPLED run, {r.get('n')} "
                                 f"of {r.get('population')}, seed {r.get('seed')}: " + ", ".join(
                                     f"{f} {100 * v['score']:.1f}% [{100 * v['interval95'][0]:.1f}"
                                     f", {100 * v['interval95'][1]:.1f}]"
                                     for f, v in r.get("scores", {}).items()
                                     if v["score"] is not None) + ")",
                "sampled": f" (SAMPLED: {r.get('n')} of {r.get('population')}, seed "
                           f"{r.get('seed')}: " + ", ".join(
                               f"{f} {100 * v['score']:.1f}% [{100 * v['interval95'][0]:.1f}, "
                               f"{100 * v['interval95'][1]:.1f}]"
                               for f, v in r.get("scores", {}).items()
                               if v["score"] is not None) + ")"}[kind]
        out.append(f"- {r['at']} {r['group']}: {r['mutants_run']} mutants in {r['wall_s']:.0f} s "
                   f"({r['mutants_per_minute']} / min){what}")
    notes = data.get("review", {})  # written by hand into mutation.json, kept across runs
    if notes:
        out += ["", "## Survivors reviewed", ""]
        for where, text in notes.items():
            out.append(f"- `{where}`: {text}")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutate", nargs="*", default=[],
                    help="repository files / folders (default: every group)")
    ap.add_argument("--resume", action="store_true",
                    help="only mutants without a result (after an interrupted run)")
    ap.add_argument("--sample", type=int, metavar="N",
                    help="check a uniform random sample of N mutants (score with a 95%% "
                         "Wilson interval, recorded as a sampled run)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="re-check only the previous run's survivors (tests added since)")
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--json", type=Path, default=RESULTS / "mutation.json")
    ap.add_argument("--md", type=Path, default=RESULTS / "mutation.md")
    args = ap.parse_args(argv)
    if args.resume and (args.sample is not None or args.rerun_survivors):
        ap.error("--resume excludes --sample and --rerun-survivors")
    if args.sample is not None and args.sample < 1:
        ap.error("--sample needs N >= 1")
    started = time.time()
    chosen = select([m for arg in args.mutate for m in arg.split()])
    results = []
    for group, files in chosen.items():
        r = run_group(group, files, args.max_children, args.resume, args.sample, args.seed,
                      args.rerun_survivors)
        results.append(r)
        merge([r], args.json, args.md, started)  # after each group, so a stop keeps results
        for f, m in r["modules"].items():
            s = f"{100 * m['score']:.1f}%" if m["score"] is not None else "-"
            if "interval95" in m:
                s += " (sampled; 95% interval {:.1f}-{:.1f}%)".format(
                    *(100 * b for b in m["interval95"]))
            print(f"  {f}: {m['killed']} killed, {m['survived']} survived, {m['timeout']} timeout,"
                  f" {m['no_tests']} no tests / {m['total']} -> {s}", flush=True)
    print(f"mutation: {time.time() - started:.0f} s; results in {args.json.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
