import sys

from nowcastkit.manager.loop import main

sys.exit(main())
