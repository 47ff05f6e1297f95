"""``python -m predictor`` runs the joulecast CLI."""

import sys

from predictor.cli import main

sys.exit(main())
