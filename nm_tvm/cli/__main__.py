"""``python -m nm_tvm.cli``."""
import sys

from .main import main

sys.exit(main())
