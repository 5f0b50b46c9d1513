"""`python -m coperniq_qbo`: the same entry point as the `coperniq-qbo` console script."""

from __future__ import annotations

import sys

from coperniq_qbo.cli import main

sys.exit(main())
