"""``python -m anywhere``: the ``anywhere`` command."""

from anywhere.bridge.cli import main

raise SystemExit(main())
