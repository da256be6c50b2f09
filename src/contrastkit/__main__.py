"""`python -m contrastkit` (also what `torchrun -m contrastkit` runs)."""

import sys

from contrastkit.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
