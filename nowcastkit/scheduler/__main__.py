import sys

from nowcastkit.scheduler.timer import main

sys.exit(main())
