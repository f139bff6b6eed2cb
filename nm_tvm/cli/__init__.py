"""``nm-tvmc``: the tvmc-style command line (compile, run, validate, profile, targets).

Conventions follow TVM's former tvmc where they apply (``--input-shapes "x:[1,3,224,224]"``,
``--pass-config k=v``, ``--disabled-pass``, ``--dump-code``, ``-o module.tar``, ``.npz``
inputs/outputs, ``--fill-mode``, ``--print-top``). Exit codes: 0 success, 1 failure (compile
error, validation over tolerance), 2 bad usage or bad input files. Errors are one line on
stderr; ``--debug`` shows the traceback. Results go to stdout, progress to stderr.
"""
from .common import CliError, parse_input_shapes, parse_pass_config
from .main import build_parser, main

__all__ = ["CliError", "build_parser", "main", "parse_input_shapes", "parse_pass_config"]
