"""Codegen: one accelerator layer (a matched composite) -> one tiled instruction program.

Each ``*_program`` function receives shapes, attributes and constant operands of a layer and
returns an :class:`AcceleratorCall`: the encoded program (header + regions + instructions) and
the tensors to pass, in region order. The program runs in the C++ simulator when the compiled
Relax VM calls ``nm_accel.run``. Tiling is chosen here against the target's memories; the
simulator rejects anything that does not fit, so a tiling bug cannot pass silently.

Submodules (each name is re-exported here; import from ``nm_tvm.target.codegen``):

* ``layer``: shared core: CodegenError, Param, AcceleratorCall, the ``_Layer`` region
  bookkeeping, shape helpers.
* ``movement``: DMA staging (double-buffered copies, strided views) and the data-movement
  layers: concat, strided_slice, transpose, resample (nearest Resize), broadcast (Expand),
  tile, pad (constant), cast (integer to float), gather (embedding lookup by GATHER).
* ``gemm``: LOOP_GEMM tiling and the GEMM layers: conv2d (im2col), conv2d_transpose
  (sub-pixel conv2d + depth-to-space DMA view), matmul, avg_pool2d, mean/sum.
* ``vector``: VEC / PWL layers: elementwise (broadcast, PWL epilogue), max_pool2d, reduce_max.
"""
from __future__ import annotations

from .gemm import (RELU_TABLE, Conv2dAttrs, ConvTranspose2dAttrs, GemmTiles, Matrix,
                   avg_pool2d_program, choose_gemm_tiles, conv2d_program,
                   conv2d_transpose_program, matmul_program, mean_program)
from .layer import AcceleratorCall, CodegenError, Param
from .movement import (PAD_MODES, Copy, broadcast_program, cast_program, concat_program,
                       gather_program, pad_program, resample_program, staging_rows,
                       strided_slice_program, tile_program, transpose_program)
from .vector import (NEG_INF_ROW, NEG_TABLE, VEC_OPS, elementwise_program, max_pool2d_program,
                     reduce_max_program, reduce_prod_program, table_entries)

# The star-export list of the former codegen.py; the other names imported above are re-exported
# for direct use too (cg.RELU_TABLE, cg.staging_rows, ...).
__all__ = ["AcceleratorCall", "CodegenError", "Conv2dAttrs", "GemmTiles", "Param",
           "avg_pool2d_program", "cast_program", "choose_gemm_tiles", "conv2d_program",
           "conv2d_transpose_program", "ConvTranspose2dAttrs", "elementwise_program",
           "matmul_program", "max_pool2d_program", "mean_program", "reduce_max_program",
           "reduce_prod_program",
           "broadcast_program", "concat_program", "gather_program", "pad_program", "resample_program", "strided_slice_program",
           "table_entries", "tile_program", "transpose_program"]
