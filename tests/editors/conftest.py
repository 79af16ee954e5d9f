"""The editor tests import their helpers (nvim_session) from this folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
