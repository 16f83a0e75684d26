"""``python -m socle`` is the ``socle`` command."""

from socle.cli import main

main()
