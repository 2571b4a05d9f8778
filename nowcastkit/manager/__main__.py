import sys

from nowcastkit.manager.process import main

sys.exit(main())
