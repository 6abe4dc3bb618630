"""`python -m onnxslim_kd` is the `onnxslim-kd` command."""

import sys

from cli.main import main

sys.exit(main())
