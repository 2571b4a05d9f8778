import sys

from nowcastkit.dashboard import main

sys.exit(main())
