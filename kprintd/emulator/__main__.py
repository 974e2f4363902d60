"""`python -m kprintd.emulator ...`: the same as `kprintd emulator ...`."""

import sys

from kprintd.emulator import main

sys.exit(main())
