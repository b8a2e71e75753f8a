import sys

from externalip.cli import main

sys.exit(main())
