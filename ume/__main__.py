import sys

from ume.cli import main

sys.exit(main())
