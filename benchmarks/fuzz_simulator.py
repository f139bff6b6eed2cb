"""Fuzz the C++ simulator (``nm_accel.run``) with random and mutated instruction programs.

    python benchmarks/fuzz_simulator.py --runs 200000              # long run (make fuzz)
    python benchmarks/fuzz_simulator.py --runs 3000 --seed 1       # the short CI run
    python benchmarks/fuzz_simulator.py --engine atheris --runs 50000   # coverage-guided

Seeds are valid programs: hand-built ones (every opcode, target/isa.ProgramBuilder) and the
codegen's programs for small conv / matmul / pooling / elementwise / transpose layers. Each run
takes a seed and mutates it (word replaced by a boundary value, a random int64, a small delta or
a bit flip; instructions duplicated, swapped or dropped; header counts changed; truncation) or
builds a random program from scratch. Arguments are fp32 tensors sized from the (mutated) region
table. Per run the simulator must either finish or raise ``ValueError``; also checked:

* a rejected program leaves its tensors untouched (every instruction is validated before any
  executes; PWL breakpoint errors, found while executing, are the documented exception);
* a program that runs gives bit-identical outputs and statistics when run again (1 in 8 runs).

The default engine runs the programs in a child process: a crash (signal) or a hang (no
progress for --hang-s) is counted, its program saved under --crash-dir (``.npy``, reload with
``numpy.load`` and pass to ``nm_tvm.target.simulator.run_program``), and a new child continues.
Prints ``runs N, crashes C, hangs H, invariant violations V``; exit status 1 if any is non-zero.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nm_tvm.target.isa import (FIELDS, HEADER_INDEX, HEADER_WORDS, INSTR_WORDS, OPERAND_BASE,
                               REGION_INDEX, REGION_WORDS, ElemType, MachineParams, Mem, Op,
                               ProgramBuilder, Queue, RegionKind, VecOp, bit)

F32 = np.float32
LOAD, COMPUTE, STORE = bit(Queue.LOAD), bit(Queue.COMPUTE), bit(Queue.STORE)
# Word indices the mutator reads in possibly corrupt programs (which Program.decode refuses).
N_REGIONS, N_INSTR = HEADER_INDEX["n_regions"], HEADER_INDEX["n_instr"]
MASKS = 1 << len(Queue)  # wait / signal masks are below this
MAX_ARG_BYTES = 1 << 22  # larger (mutated) regions get a small tensor: the simulator must refuse
SPECIALS = [0, 1, -1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 63, 64, 255, 256, 1023, 1024, 4096,
            65535, 65536, 2**20, 2**26, 2**31 - 1, 2**31, 2**32, 2**32 - 1, 2**62, 2**63 - 1,
            -2**31, -2**63]


# ----------------------------------------------------------------------------------- seeds
def _machine(dim=4, sp_rows=128, acc_rows=64, pwl=16, dtype="float32"):
    return MachineParams(dim=dim, sp_rows=sp_rows, acc_rows=acc_rows, pwl_entries=pwl,
                         operand_dtype=dtype, dram_bytes=1 << 20, dram_bw=16, dram_latency=10)


def _hand_seeds() -> list[np.ndarray]:
    seeds = []
    for dtype in ("float32", "bfloat16"):
        b = ProgramBuilder(_machine(dtype=dtype))
        ra, rb, rt, rs, ro = b.region(256), b.region(256), b.region(24), \
            b.region(256, RegionKind.SCRATCH), b.region(256)
        b.emit(Op.LOAD_PWL, table_base=0, dram_addr=rt, n_segments=2)
        b.emit(Op.LOAD, dst_mem=Mem.SCRATCHPAD, dst_row=0, dram_addr=ra, rows=6, cols=4,
               row_stride=16, col_stride=4, pad_before=1, pad_after=1)
        b.emit(Op.LOAD, signal=COMPUTE, dst_mem=Mem.SCRATCHPAD, dst_row=8, dram_addr=rb, rows=4,
               cols=4, row_stride=16, col_stride=4)
        b.emit(Op.GEMM, wait=LOAD, a_row=0, b_row=8, c_row=0, m=6, k=4, n=4, accumulate=0)
        b.emit(Op.VEC, op=VecOp.ADD, dst_row=8, a_row=0, b_row=1, rows=4, b_broadcast=1)
        b.emit(Op.PWL, signal=STORE, dst_row=16, src_row=8, rows=4, table_base=0, n_segments=2)
        b.emit(Op.STORE, wait=COMPUTE, signal=LOAD, src_mem=Mem.ACCUMULATOR, src_row=16,
               dram_addr=rs, rows=4, cols=4, row_stride=16, col_stride=4)
        b.emit(Op.LOAD, wait=STORE, signal=STORE, dst_mem=Mem.ACCUMULATOR, dst_row=32,
               dram_addr=rs, rows=4, cols=4, row_stride=16, col_stride=4)
        b.emit(Op.STORE, wait=LOAD, src_mem=Mem.ACCUMULATOR, src_row=32, dram_addr=ro, rows=4,
               cols=4, row_stride=16, col_stride=4)
        b.emit(Op.LOOP_GEMM, a_addr=ra, a_row_stride=32, a_col_stride=4, b_addr=rb,
               b_row_stride=32, b_col_stride=4, c_addr=ro, c_row_stride=32, c_col_stride=4,
               d_addr=ra, d_row_stride=32, d_col_stride=4, bias_addr=rb, M=8, K=8, N=8,
               tile_m=4, tile_k=1, tile_n=1, act_table=0, act_segments=2, sp_base=0,
               acc_base=0, has_d=1, has_bias=1, has_act=1)
        seeds.append(b.encode())
    return seeds


def _codegen_seeds() -> list[np.ndarray]:
    """Programs the compiler really emits: small layers of every kind, both presets."""
    from nm_tvm.target import codegen as cg
    from nm_tvm.target.hardware import load_preset

    rng = np.random.default_rng(0)
    out = []
    for preset in ("fp32-16x16", "bf16-32x32"):
        hw = load_preset(preset)
        out += [call.program for call in (
            cg.conv2d_program(hw, 0, (1, 3, 6, 6), rng.standard_normal((4, 3, 3, 3)),
                              cg.Conv2dAttrs((1, 1), (1, 1, 1, 1), (1, 1)),
                              rng.standard_normal(4).astype(F32), None, True),
            cg.conv2d_program(hw, 1, (1, 8, 5, 5), rng.standard_normal((8, 8, 1, 1)),
                              cg.Conv2dAttrs((2, 2), (0, 0, 0, 0), (1, 1)), None,
                              cg.Param(0), False),
            cg.matmul_program(hw, 2, (5, 20), (20, 7), rng.standard_normal((20, 7)),
                              rng.standard_normal(7).astype(F32), None, True),
            cg.matmul_program(hw, 3, (2, 3, 9), (2, 9, 4), None, None, None, False),
            cg.avg_pool2d_program(hw, 4, (1, 2, 6, 6), (2, 2), (2, 2), (1, 1)),
            cg.mean_program(hw, 5, (1, 3, 4, 4), [2, 3], True),
            cg.elementwise_program(hw, 6, (3, 17), "add", [(cg.Param(0), (3, 17)),
                                                           (cg.Param(1), (3, 17))],
                                   cg.RELU_TABLE),
            cg.elementwise_program(hw, 7, (2, 5), "minimum",
                                   [(cg.Param(0), (2, 5)),
                                    (rng.standard_normal((1, 5)).astype(F32), (1, 5))]),
            cg.transpose_program(hw, 8, (3, 5, 7), [2, 0, 1]),
            cg.max_pool2d_program(hw, 9, (1, 2, 7, 7), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
            cg.reduce_max_program(hw, 10, (2, 3, 9), [2], True),
            cg.concat_program(hw, 11, [(cg.Param(0), (2, 3)), (cg.Param(1), (2, 5))], 1),
            cg.strided_slice_program(hw, 12, (4, 9), [1, 0], [4, 9], [2, 3]),
            cg.gather_program(hw, 13, rng.standard_normal((50, 20)), (3, 4), "int64"),
            cg.gather_program(hw, 14, rng.standard_normal((6, 9, 5)), (7,), "int32", axis=1),
            cg.cast_program(hw, 15, (3, 11), "int64"),
        )]
    return out


def seeds() -> list[np.ndarray]:
    return _hand_seeds() + _codegen_seeds()


# ------------------------------------------------------------------------------- mutation
def _random_program(rng) -> np.ndarray:
    dim = int(rng.choice([1, 2, 4, 8, 16]))
    b = ProgramBuilder(_machine(dim=dim, sp_rows=int(rng.integers(4 * dim, 256)),
                                acc_rows=int(rng.integers(3 * dim, 128)),
                                pwl=int(rng.integers(2, 32)),
                                dtype=str(rng.choice(["float32", "bfloat16"]))))
    for _ in range(int(rng.integers(0, 4))):
        b.region(int(rng.integers(1, 64)) * 4, RegionKind(int(rng.integers(0, len(RegionKind)))),
                 ElemType(int(rng.choice(len(ElemType))) if rng.random() < 0.3
                          else ElemType.float32))
    for _ in range(int(rng.integers(0, 12))):
        op = Op(int(rng.integers(min(Op), max(Op) + 1)))
        vals = {name: int(rng.choice(SPECIALS[:20])) if rng.random() < 0.5 else
                int(rng.integers(0, 64)) for name in FIELDS[op]}
        b.emit(op, wait=int(rng.integers(0, MASKS)) if rng.random() < 0.3 else 0,
               signal=int(rng.integers(0, MASKS)) if rng.random() < 0.3 else 0, **vals)
    return b.encode()


def _wrap(v: int) -> int:
    """Two's-complement int64 wrap-around (the word as the simulator sees it)."""
    return (v + 2**63) % 2**64 - 2**63


def mutate(seed: np.ndarray, rng) -> np.ndarray:
    p = seed.copy()
    n_instr = int(p[N_INSTR]) if len(p) > N_INSTR else 0
    body = (HEADER_WORDS + REGION_WORDS * max(int(p[N_REGIONS]), 0) if len(p) > N_REGIONS
            else HEADER_WORDS)
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.random()
        if kind < 0.55 and len(p):  # one word (mostly outside the header)
            lo = HEADER_WORDS if len(p) > HEADER_WORDS and rng.random() < 0.85 else 0
            i = int(rng.integers(lo, len(p)))
            r = rng.random()
            if r < 0.45:
                p[i] = SPECIALS[int(rng.integers(len(SPECIALS)))]
            elif r < 0.65:
                p[i] = _wrap(int(p[i]) + int(rng.integers(-4, 5)))
            elif r < 0.85:
                p[i] = _wrap(int(p[i]) ^ (1 << int(rng.integers(64))))
            else:
                p[i] = rng.integers(-2**63, 2**63 - 1, dtype=np.int64)
        elif kind < 0.7 and n_instr and body < len(p):  # instruction-level
            recs = p[body:body + n_instr * INSTR_WORDS]
            if len(recs) != n_instr * INSTR_WORDS:
                continue
            recs = recs.reshape(n_instr, INSTR_WORDS).copy()
            i, j = (int(v) for v in rng.integers(n_instr, size=2))
            choice = rng.random()
            if choice < 0.4:
                recs[[i, j]] = recs[[j, i]]
            elif choice < 0.7:
                recs = np.insert(recs, j, recs[i], axis=0)
            else:
                recs = np.delete(recs, i, axis=0)
            p = np.concatenate([p[:body], recs.reshape(-1), p[body + n_instr * INSTR_WORDS:]])
            p[N_INSTR] = len(recs)
            n_instr = len(recs)
        elif kind < 0.75 and len(p) > N_INSTR:  # header counts / machine numbers
            i = int(rng.integers(N_REGIONS, min(HEADER_WORDS, len(p))))
            p[i] = SPECIALS[int(rng.integers(len(SPECIALS)))]
        elif kind < 0.78 and len(p):  # truncate or extend
            if rng.random() < 0.5:
                p = p[: int(rng.integers(len(p)))]
            else:
                p = np.concatenate([p, rng.integers(0, 64, size=int(rng.integers(1, 64)),
                                                    dtype=np.int64)])
        else:  # operand word of an instruction, boundary values
            if n_instr and body + INSTR_WORDS <= len(p):
                i = body + int(rng.integers(min(n_instr, (len(p) - body) // INSTR_WORDS))) \
                    * INSTR_WORDS + int(rng.integers(OPERAND_BASE, INSTR_WORDS))
                p[i] = SPECIALS[int(rng.integers(len(SPECIALS)))]
    return p


def args_for(program: np.ndarray, rng) -> list[np.ndarray]:
    """One tensor per argument region of the (possibly corrupt) region table, of the region's
    element type (random indices, some out of range, for integer regions)."""
    if len(program) < HEADER_WORDS:
        return [np.zeros(4, F32)]
    n = int(program[N_REGIONS])
    if n < 0 or n > 64 or len(program) < HEADER_WORDS + n * REGION_WORDS:
        return [np.zeros(4, F32)]
    out = []
    for r in range(n):
        base = HEADER_WORDS + r * REGION_WORDS
        size = int(program[base + REGION_INDEX["size"]])
        kind = int(program[base + REGION_INDEX["kind"]])
        dtype = int(program[base + REGION_INDEX["dtype"]])
        if kind != int(RegionKind.ARGUMENT):
            continue
        np_type = {int(ElemType.int32): np.int32, int(ElemType.int64): np.int64}.get(dtype, F32)
        itemsize = np.dtype(np_type).itemsize
        elems = size // itemsize if 0 <= size <= MAX_ARG_BYTES else 3
        if rng.random() < 0.05:
            elems += 1  # wrong size: must be refused
        if np_type is F32:
            out.append(rng.standard_normal(max(elems, 0)).astype(F32))
        else:
            out.append(rng.integers(-70, 70, size=max(elems, 0)).astype(np_type))
    return out


def make_input(all_seeds, rng) -> tuple[np.ndarray, list[np.ndarray]]:
    if rng.random() < 0.15:
        prog = _random_program(rng)
    else:
        prog = all_seeds[int(rng.integers(len(all_seeds)))]
        if rng.random() < 0.95:
            prog = mutate(prog, rng)
    return prog, args_for(prog, rng)


# ---------------------------------------------------------------------------- execution
class Runner:
    def __init__(self):
        import tvm
        import tvm_ffi

        from nm_tvm.target import simulator

        simulator.load()
        self.tvm = tvm
        self.run_fn = tvm_ffi.get_global_func("nm_accel.run")
        self.take_stats = tvm_ffi.get_global_func("nm_accel.take_stats")

    def once(self, program, args):
        cpu = self.tvm.cpu()
        tensors = [self.tvm.runtime.tensor(a, cpu) for a in args]
        self.run_fn(self.tvm.runtime.tensor(program, cpu), *tensors)
        stats = np.from_dlpack(self.take_stats()).copy()
        return [t.numpy() for t in tensors], stats

    def check(self, program, args, rng) -> str | None:
        """None, or a description of a violated invariant. Raises on a non-ValueError."""
        cpu = self.tvm.cpu()
        tensors = [self.tvm.runtime.tensor(a, cpu) for a in args]
        try:
            self.run_fn(self.tvm.runtime.tensor(program, cpu), *tensors)
        except ValueError as err:
            if "non-decreasing" not in str(err):  # data-dependent PWL check runs late
                for before, t in zip(args, tensors):
                    if not np.array_equal(before, t.numpy(), equal_nan=True):
                        return f"rejected program modified its tensors: {str(err)[:200]}"
            return None
        stats = np.from_dlpack(self.take_stats()).copy()
        if rng.random() < 0.125:
            outs = [t.numpy() for t in tensors]
            again, stats2 = self.once(program, args)
            if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(outs, again)) or \
                    not np.array_equal(stats, stats2):
                return "non-deterministic: second run differs"
        return None


def worker(seed: int, start: int, runs: int, progress_path: str, crash_at: int = -1) -> int:
    """Run inputs start..runs-1 (input i is a pure function of (seed, i)); report progress."""
    runner = Runner()
    all_seeds = seeds()
    progress = open(progress_path, "r+b")
    violations = []
    for i in range(start, runs):
        progress.seek(0)
        progress.write(int(i).to_bytes(8, "little"))
        progress.flush()
        rng = np.random.default_rng([seed, i])
        program, args = make_input(all_seeds, rng)
        if i == crash_at:  # self-test of the crash capture (--self-test-crash-at)
            import signal
            os.kill(os.getpid(), signal.SIGSEGV)
        try:
            msg = runner.check(program, args, rng)
        except Exception as err:  # noqa: BLE001 -- a non-ValueError is an invariant violation
            msg = f"unexpected {type(err).__name__}: {str(err)[:200]}"
        if msg:
            violations.append({"input": i, "violation": msg})
    progress.seek(0)
    progress.write(int(runs).to_bytes(8, "little"))
    progress.flush()
    print(json.dumps({"violations": violations, "n_seeds": len(all_seeds)}), flush=True)
    return 0


def regenerate(seed: int, i: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng([seed, i])
    return make_input(seeds(), rng)


def supervise(seed: int, runs: int, hang_s: float, crash_dir: Path, quiet: bool,
              crash_at: int = -1) -> dict:
    import tempfile

    crashes, hangs, violations, n_seeds = [], [], [], 0
    start, t0 = 0, time.perf_counter()
    fd, progress_path = tempfile.mkstemp(prefix="nm_fuzz_")
    os.close(fd)
    try:
        while start < runs:
            Path(progress_path).write_bytes(int(start).to_bytes(8, "little"))
            proc = subprocess.Popen(
                [sys.executable, __file__, "--worker", "--seed", str(seed), "--start",
                 str(start), "--runs", str(runs), "--progress", progress_path,
                 "--self-test-crash-at", str(crash_at)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            last, last_change, killed = start, time.perf_counter(), False
            while proc.poll() is None:
                time.sleep(0.2)
                cur = int.from_bytes(Path(progress_path).read_bytes()[:8], "little")
                if cur != last:
                    last, last_change = cur, time.perf_counter()
                elif time.perf_counter() - last_change > hang_s:
                    killed = True
                    proc.kill()
                    proc.wait()
                    break
            out, err = proc.communicate()
            cur = int.from_bytes(Path(progress_path).read_bytes()[:8], "little")
            if proc.returncode == 0 and cur >= runs:
                report = json.loads(out.strip().splitlines()[-1])
                violations += report["violations"]
                n_seeds = report["n_seeds"]
                break
            if proc.returncode > 0 and not killed:  # a Python error in the harness itself
                raise RuntimeError(f"fuzz worker failed at input {cur}:\n{err[-3000:]}")
            kind = "hang" if killed else "crash"
            program, _ = regenerate(seed, cur)
            crash_dir.mkdir(parents=True, exist_ok=True)
            path = crash_dir / f"{kind}-seed{seed}-input{cur}.npy"
            np.save(path, program)
            entry = {"input": cur, "returncode": proc.returncode, "program": str(path),
                     "stderr_tail": err[-2000:]}
            (crashes if kind == "crash" else hangs).append(entry)
            if not quiet:
                print(f"{kind}: input {cur} (exit {proc.returncode}) saved to {path}",
                      file=sys.stderr)
            start = cur + 1
    finally:
        os.unlink(progress_path)
    return {"engine": "mutational", "seed": seed, "runs": runs, "crashes": len(crashes),
            "hangs": len(hangs), "invariant_violations": len(violations), "seeds": n_seeds,
            "seconds": round(time.perf_counter() - t0, 1), "crash_details": crashes,
            "hang_details": hangs, "violation_details": violations[:20]}


def atheris_main(runs: int, seed: int) -> int:
    """Coverage-guided (Python-level coverage) fuzzing with atheris / libFuzzer: the input bytes
    pick a seed and drive the mutations. libFuzzer itself reports crashes (deadly signals)."""
    import atheris

    runner = Runner()
    all_seeds = seeds()

    def one(data: bytes):
        rng = np.random.default_rng(list(data[:32]) or [0])
        program, args = make_input(all_seeds, rng)
        msg = runner.check(program, args, rng)
        if msg:
            raise AssertionError(msg)

    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-seed={seed}"], one)
    atheris.Fuzz()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=["mutational", "atheris"], default="mutational")
    ap.add_argument("--hang-s", type=float, default=30.0)
    ap.add_argument("--crash-dir", default=str(Path(__file__).parent / "results" / "fuzz_crashes"))
    ap.add_argument("--json", default=None, help="write the summary here")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--progress", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--self-test-crash-at", type=int, default=-1, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.seed, a.start, a.runs, a.progress, a.self_test_crash_at)
    if a.engine == "atheris":
        return atheris_main(a.runs, a.seed)
    summary = supervise(a.seed, a.runs, a.hang_s, Path(a.crash_dir), a.quiet,
                        a.self_test_crash_at)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(summary, indent=1))
    print(f"fuzz_simulator: runs {summary['runs']}, crashes {summary['crashes']}, hangs "
          f"{summary['hangs']}, invariant violations {summary['invariant_violations']} "
          f"(seed {a.seed}, {summary['seeds']} seed programs, {summary['seconds']} s)")
    for v in summary["violation_details"]:
        print(f"  violation at input {v['input']}: {v['violation']}")
    bad = summary["crashes"] + summary["hangs"] + summary["invariant_violations"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
