import sys

from nowcastkit.cli import main

sys.exit(main())
