"""``python -m src`` (or ``python -m llm_gateway`` once installed): the ``llm-gateway`` command."""

import sys

from .cli import main

sys.exit(main())
