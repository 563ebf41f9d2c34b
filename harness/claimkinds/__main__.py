"""`python -m harness.claimkinds`: list the registered claim kinds."""

import sys

from harness.claimkinds import main

sys.exit(main())
