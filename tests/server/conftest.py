"""The server tests import their helpers (lsp_session, fake_backend) from this folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
