"""Names of the packed functions a compiled module calls: the one contract between the pass
that emits a call, the backend that offloads it, and the code that implements it."""

# Elementwise PWL table map: emitted by passes/linearize.py, offloaded to the PWL unit by the
# backend (target/backend), implemented on the host for strict=False by nm_tvm/host_kernels.py.
PWL_FUNC = "nm.pwl_map"
# Calibration probe builds only: the fitted function itself, evaluated exactly on the host.
EXACT_FUNC = "nm.exact_map"
# One accelerator program: emitted by target/backend/lower.py, registered by the C++
# simulator (target/csrc/ffi_entry.cc).
RUN_FUNC = "nm_accel.run"
